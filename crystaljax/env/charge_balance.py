"""Charge-balanced action masks (env option ``mask: charge_balance``).

An element is allowed at a step when the WHOLE crystal can still be made charge neutral:
there is a choice of one common oxidation state (pymatgen's
``Element.common_oxidation_states``) per site, for the sites already filled, the focus
site (holding the element) and every site still empty (holding any element of the
vocabulary), whose sum is 0. An element that pymatgen lists no common oxidation state for
(the noble gases He, Ne, Ar, Rn and the superheavy elements) counts as neutral: 0 is its
only state.

Host side, once per env (:func:`charge_tables`): each token's states as a multi-hot row
over the charges ``q_min..q_max`` of the vocabulary, and for k = 0..S-1 more sites the set
of total charges they can cancel (the completion table). In the step (:func:`action_mask`,
pure jnp, jit/vmap-safe): the set of partial charge sums the filled sites can take (a
boolean vector over a bounded charge grid, recomputed from the tokens with a scan over the
sites), shifted by each state of each element and intersected with the completion row of
the number of sites left.

Shapes: V = vocabulary size, S = max sites, Q = q_max - q_min + 1 (charges of the
vocabulary), C = size of the charge grid (every partial sum of at most S sites).

Induction shows that a mask followed from the first step is never all False (an allowed
element leaves a partial sum with a completion of the remaining sites, and a completion
of k >= 1 sites starts with some element); :func:`mask_tables` checks on the host that
the first step has an allowed element, i.e. that each template admits a neutral crystal.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from pymatgen.core import Element

from crystaljax.config import ConfigError

#: the values of the env option ``mask``
MASK_CHOICES = ("none", "charge_balance")


@functools.cache
def oxidation_states(symbol: str) -> tuple[int, ...]:
    """Common oxidation states of an element (pymatgen's), ``(0,)`` where it lists none."""
    return tuple(int(q) for q in Element(symbol).common_oxidation_states) or (0,)


@dataclasses.dataclass(frozen=True, eq=False)
class ChargeTables:
    """Host-side tables of one vocabulary and padding size (NumPy; constants in the jit).

    q_min, q_max: lowest and highest oxidation state of the vocabulary (0 included).
    offset: index of charge 0 on the charge grid (grid index i holds charge i - offset).
    states: bool [V + 1, Q]; ``states[t, j]``: token t may take charge q_min + j (row V,
      the empty token, is neutral).
    completion: bool [S, C]; ``completion[k, i]``: k more sites (any elements of the
      vocabulary) can bring a partial sum of charge i - offset to 0.
    """

    q_min: int
    q_max: int
    offset: int
    states: np.ndarray
    completion: np.ndarray

    @property
    def num_charges(self) -> int:
        """C, the size of the charge grid."""
        return self.completion.shape[1]

    def can_balance(self, num_sites: int) -> bool:
        """Whether some crystal of ``num_sites`` sites of the vocabulary is neutral."""
        first = self.completion[num_sites - 1][self.offset + self.charges]  # bool [Q]
        return bool((self.states[:-1] & first[None, :]).any())

    @property
    def charges(self) -> np.ndarray:
        """int [Q] the charges of the columns of ``states``."""
        return np.arange(self.q_min, self.q_max + 1)


def charge_tables(vocab: Sequence[str], max_sites: int) -> ChargeTables:
    """Build the tables for a vocabulary and S = ``max_sites`` (see :class:`ChargeTables`)."""
    per_element = [oxidation_states(s) for s in vocab]
    union = sorted({q for states in per_element for q in states})
    q_min, q_max = min(union + [0]), max(union + [0])
    states = np.zeros((len(vocab) + 1, q_max - q_min + 1), bool)
    for t, qs in enumerate(per_element):
        states[t, np.asarray(qs) - q_min] = True
    states[len(vocab), -q_min] = True
    lo, hi = max_sites * q_min, max_sites * q_max  # every sum of at most S sites
    offset = -lo
    completion = np.zeros((max_sites, hi - lo + 1), bool)
    sums = {0}  # totals that k more sites can take
    for k in range(max_sites):
        cancel = [-s for s in sums if lo <= -s <= hi]
        completion[k, np.asarray(cancel, int) + offset] = True
        sums = {s + q for s in sums for q in union}
    return ChargeTables(q_min, q_max, offset, states, completion)


def mask_tables(mask: str, vocab: Sequence[str], templates: Sequence, max_sites: int
                ) -> ChargeTables | None:
    """The tables the env option ``mask`` needs: None for "none". ConfigError for another
    value, or (charge_balance) a template that no crystal of the vocabulary balances."""
    if mask not in MASK_CHOICES:
        raise ConfigError(f"mask must be one of {list(MASK_CHOICES)}, got {mask!r}")
    if mask == "none":
        return None
    tables = charge_tables(vocab, max_sites)
    for t in templates:
        if not tables.can_balance(t.num_sites):
            raise ConfigError(
                f"mask: charge_balance: no crystal of template {t.name!r} ({t.num_sites} "
                "sites) with elements of the vocabulary is charge neutral in common "
                "oxidation states; widen the vocabulary or use mask: none")
    return tables


def placed_sites(order: jax.Array, step: jax.Array) -> jax.Array:
    """bool [S]: the sites filled so far, the first ``step`` of the fill ``order``
    (int32 [S], -1 past the template's sites). In substitution mode the other sites still
    hold their random start elements; they will be replaced, so they do not count."""
    S = order.shape[-1]
    rank = jnp.full((S,), S, jnp.int32).at[jnp.where(order >= 0, order, S)].set(
        jnp.arange(S, dtype=jnp.int32), mode="drop")
    return rank < step


def _shift(x: jax.Array, q: int) -> jax.Array:
    """``x`` [..., C] moved by ``q`` charges (a static int): out[i] = x[i - q], False
    where that falls off the grid."""
    if q == 0:
        return x
    pad = jnp.zeros(x.shape[:-1] + (abs(q),), x.dtype)
    if q > 0:
        return jnp.concatenate([pad, x[..., :-q]], axis=-1)
    return jnp.concatenate([x[..., -q:], pad], axis=-1)


def _add_charges(tables: ChargeTables, sums: jax.Array, allowed: jax.Array) -> jax.Array:
    """bool [Q, C]: row j is ``sums`` [C] + charge q_min + j where ``allowed`` [Q], else
    all False."""
    return jnp.stack([_shift(sums, int(q)) for q in tables.charges]) & allowed[:, None]


def partial_sums(tables: ChargeTables, tokens: jax.Array, placed: jax.Array) -> jax.Array:
    """bool [C]: the totals the ``placed`` sites (bool [S]) of ``tokens`` (int32 [S]) can
    take, one common oxidation state each (grid index = charge + offset)."""
    states = jnp.asarray(tables.states)
    start = jnp.zeros((tables.num_charges,), bool).at[tables.offset].set(True)

    def add_site(sums, site):
        token, is_placed = site
        new = _add_charges(tables, sums, states[token]).any(axis=0)
        return jnp.where(is_placed, new, sums), None

    sums, _ = jax.lax.scan(add_site, start, (tokens, placed))
    return sums


def action_mask(tables: ChargeTables, tokens: jax.Array, placed: jax.Array,
                remaining: jax.Array) -> jax.Array:
    """bool [V]: the elements that keep a neutral crystal possible at the focus site.

    tokens int32 [S]; placed bool [S] (filled sites); remaining int32 []: sites still to
    fill after the focus site. All False when no element does (only after an action this
    mask did not allow); :meth:`CrystalEnv.observe` then allows every element."""
    sums = partial_sums(tables, tokens, placed)
    k = jnp.clip(remaining, 0, tables.completion.shape[0] - 1)
    completable = jnp.asarray(tables.completion)[k]
    all_states = jnp.ones((tables.states.shape[1],), bool)
    # by_charge[j]: placing charge q_min + j here leaves a sum the other sites can cancel
    by_charge = (_add_charges(tables, sums, all_states) & completable[None, :]).any(axis=1)
    return (jnp.asarray(tables.states[:-1]) & by_charge[None, :]).any(axis=1)


def is_balanced(tables: ChargeTables, tokens: jax.Array, num_sites: jax.Array) -> jax.Array:
    """bool []: the first ``num_sites`` sites of ``tokens`` (int32 [S], a finished crystal)
    admit a neutral choice of common oxidation states."""
    placed = jnp.arange(tokens.shape[-1]) < num_sites
    return partial_sums(tables, tokens, placed)[tables.offset]


def random_crystals(env, params, key: jax.Array, num_crystals: int = 1000,
                    use_mask: bool = True):
    """Final env states (batched, leading axis ``num_crystals``) of random episodes.

    Each step takes a uniformly random element among those the observation's
    ``action_mask`` allows (``use_mask``) or among all of them; templates and start sites
    are drawn as at reset. ``env`` is a CrystalEnv (any ``mask``; with ``mask: none`` both
    settings draw from every element). :meth:`CrystalEnv.to_structure` turns one into a
    crystal."""
    k_reset, k_act = jax.random.split(key)

    @jax.jit
    def run(k_reset, k_act):
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_reset, num_crystals), params)

        def body(carry, k):
            obs, state = carry
            allowed = obs.action_mask if use_mask else jnp.ones_like(obs.action_mask)
            action = jax.random.categorical(
                k, jnp.where(allowed, 0.0, -jnp.inf), axis=-1).astype(jnp.int32)
            obs, state, *_ = jax.vmap(env.step_env, in_axes=(0, 0, None))(state, action, params)
            return (obs, state), None

        (_, state), _ = jax.lax.scan(body, (obs, state), jax.random.split(k_act, env.max_sites))
        return state

    return run(k_reset, k_act)


def random_balanced_fraction(env, params, key: jax.Array, num_crystals: int = 1000,
                             use_mask: bool = True) -> float:
    """The fraction of ``num_crystals`` random crystals (:func:`random_crystals`) that are
    charge balanced."""
    tables = charge_tables(env.vocab, env.max_sites)
    state = random_crystals(env, params, key, num_crystals, use_mask)
    n = params.templates.num_sites[state.template_id]
    return float(jax.vmap(lambda t, m: is_balanced(tables, t, m))(state.tokens, n).mean())


__all__ = ["MASK_CHOICES", "ChargeTables", "action_mask", "charge_tables", "is_balanced",
           "mask_tables", "oxidation_states", "partial_sums", "placed_sites", "random_balanced_fraction",
           "random_crystals"]
