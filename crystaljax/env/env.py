"""`CrystalEnv`: the pure, jittable, vmappable crystal-decoration environment."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pymatgen.core import Structure

from crystaljax.env import charge_balance
from crystaljax.env.base import EnvBase
from crystaljax.env.specs import ArraySpec
from crystaljax.env.types import GLOBAL_FEATURES, EnvParams, EnvState, Observation
from crystaljax.oracles.base import Status
from crystaljax.properties import get_property
from crystaljax.templates.core import CrystalTemplate

#: oracle signature inside the step: (tokens [S], template_id [], terminated [], params)
#: -> (value f32 [], status int32 [])
StepOracle = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, EnvParams],
                      tuple[jnp.ndarray, jnp.ndarray]]


class CrystalEnv(EnvBase):
    """Decorate a crystal template one site per step; the finished crystal is scored.

    Gymnax-style and stateless: ``reset(key, params) -> (obs, state)`` and
    ``step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)``,
    both pure and jittable; vmap them over keys/states/actions for many envs.

    * Action: an integer in ``[0, num_actions)``, the element (vocabulary index) for the
      focus site. Out-of-range actions (any integer dtype) are clipped to the nearest valid
      one and flagged in ``info['invalid_action']`` (the Gymnasium adapter rejects them).
    * Fill order: breadth-first over the template's neighbour graph from a uniformly
      drawn start site; the focus advances every step. An episode has one step per site.
    * Reward: 0 until the last site; then the property reward (see crystaljax.rewards),
      or the failure penalty when the oracle reports a failure.
    * Termination after the last site; ``truncated`` is always False (kept separate).
    * Auto-reset: ``step`` returns the next episode's first observation when the episode
      ends; ``info`` holds ``final_observation``, ``final_state``, ``property`` (value,
      nan while not terminal), ``status`` (Status code, -1 while not terminal),
      ``invalid_action`` (bool: the action was out of range and was clipped).
    * Substitution mode: episodes start with random elements on every site and each
      step replaces the element of the focus site.
    * ``mask="charge_balance"``: ``action_mask`` allows only the elements with which the
      whole crystal can still be charge neutral in common oxidation states (see
      :mod:`crystaljax.env.charge_balance`); ``"none"`` (default) allows every element.
      The mask is advice, as before: the step does not reject an element it excludes.

    Observation fields are documented on :class:`crystaljax.env.types.Observation`.
    """

    #: episodes end by termination only (after the last site)
    can_truncate: bool = False

    def __init__(self, *, templates: Sequence[CrystalTemplate], vocab: Sequence[str],
                 property_name: str, oracle: StepOracle, oracle_name: str, max_sites: int,
                 max_edges: int, num_rbf: int, substitution: bool, host_bridge=None,
                 config: Any = None, oracle_can_fail: bool | None = None,
                 mask: str = "none", in_graph_oracle: Any = None):
        self.templates = tuple(templates)
        self.vocab = tuple(vocab)
        self.property_name = property_name
        self.oracle = oracle
        self.oracle_name = oracle_name
        self.max_sites = int(max_sites)
        self.max_edges = int(max_edges)
        self.num_rbf = int(num_rbf)
        self.substitution = bool(substitution)
        self.host_bridge = host_bridge
        #: the in-graph oracle object behind ``oracle`` (e.g. a CHGNetStepOracle), or None
        self.in_graph_oracle = in_graph_oracle
        self.config = config
        self.property = get_property(property_name)
        self._oracle_can_fail = (host_bridge is not None if oracle_can_fail is None
                                 else bool(oracle_can_fail))
        self.mask = mask
        #: host tables of the charge-balance mask (None with mask="none")
        self.charge_tables = charge_balance.mask_tables(mask, self.vocab, self.templates,
                                                        self.max_sites)

    # ---- sizes and specs ------------------------------------------------------------------
    @property
    def oracle_can_fail(self) -> bool:
        """Whether an evaluation can fail (and an episode end with the penalty): declared by
        the oracle (False for the in-graph ones; host oracles say so themselves)."""
        return self._oracle_can_fail

    def reward_range(self, params: EnvParams) -> tuple[float, float]:
        """(lowest, highest) terminal reward under ``params``: the property's reward bounds,
        with the failure penalty only when the oracle can fail."""
        return self.property.reward_bounds(params.reward, self.oracle_can_fail)

    def action_spec(self) -> ArraySpec:
        """A scalar int32 element index in [0, num_actions)."""
        return ArraySpec((), np.int32, 0, self.num_actions - 1)

    def oracle_stats(self) -> dict:
        """Counters of the oracle: ``evaluations`` (crystals scored on the host),
        ``computed`` (of those, computed rather than read from a cache), ``cache_hits`` and
        ``by_status`` (evaluations by Status name). All zero for in-graph oracles."""
        if self.host_bridge is None:
            return super().oracle_stats()
        return self.host_bridge.stats()

    def oracle_records(self, since: int = 0) -> tuple[list, int]:
        """(records evaluated after the first ``since``, new count): the host oracle's
        :class:`~crystaljax.oracles.bridge.OracleRecord` (tokens, template id, value,
        status, reason, the step's reward), oldest first; ([], 0) for in-graph oracles."""
        if self.host_bridge is None:
            return [], 0
        return self.host_bridge.records_since(since)

    def close(self) -> None:
        """Shut down the host oracle (process pool, Dask client, cache); idempotent."""
        if self.host_bridge is not None:
            self.host_bridge.close()

    @property
    def num_actions(self) -> int:
        return len(self.vocab)

    @property
    def empty_token(self) -> int:
        return len(self.vocab)

    def observation_spec(self) -> Observation:
        """An Observation whose leaves are :class:`ArraySpec` (shape, dtype, bounds)."""
        S, E, V = self.max_sites, self.max_edges, self.num_actions
        return Observation(
            tokens=ArraySpec((S,), np.int32, 0, V),
            focus=ArraySpec((S,), np.bool_),
            node_mask=ArraySpec((S,), np.bool_),
            edge_features=ArraySpec((E, self.num_rbf), np.float32, 0.0, 1.0),
            distances=ArraySpec((E,), np.float32, 0.0, np.inf),
            senders=ArraySpec((E,), np.int32, 0, S - 1),
            receivers=ArraySpec((E,), np.int32, 0, S - 1),
            edge_mask=ArraySpec((E,), np.bool_),
            globals=ArraySpec((len(GLOBAL_FEATURES),), np.float32, -np.inf, np.inf),
            action_mask=ArraySpec((V,), np.bool_),
            template_id=ArraySpec((), np.int32, 0, len(self.templates) - 1),
        )

    # ---- pure functional core ---------------------------------------------------------------
    def observe(self, state: EnvState, params: EnvParams) -> Observation:
        """The observation of a state (pure)."""
        table = params.templates
        tid = state.template_id
        n = table.num_sites[tid]
        site_ids = jnp.arange(self.max_sites)
        node_mask = site_ids < n
        focus_site = state.order[jnp.minimum(state.step, self.max_sites - 1)]
        focus = (site_ids == focus_site) & (state.step < n)
        distances = table.distances[tid]
        edge_mask = table.edge_mask[tid]
        rbf = jnp.exp(-(((distances[:, None] - params.rbf_centers) / params.rbf_width) ** 2))
        rbf = jnp.where(edge_mask[:, None], rbf, 0.0)
        progress = state.step.astype(jnp.float32) / n.astype(jnp.float32)
        globals_ = jnp.concatenate([
            table.lattice_features[tid],
            jnp.stack([params.reward.target / params.target_scale, progress]),
        ])
        return Observation(
            tokens=state.tokens,
            focus=focus,
            node_mask=node_mask,
            edge_features=rbf.astype(jnp.float32),
            distances=distances,
            senders=table.senders[tid],
            receivers=table.receivers[tid],
            edge_mask=edge_mask,
            globals=globals_.astype(jnp.float32),
            action_mask=self.action_mask(state, params),
            template_id=tid,
        )

    def action_mask(self, state: EnvState, params: EnvParams) -> jnp.ndarray:
        """bool [V]: the elements allowed at the focus site (pure). All True with
        ``mask="none"``, once the episode is finished, and (charge_balance) where no element
        can complete a neutral crystal any more (only after an action the mask excluded)."""
        everything = jnp.ones((self.num_actions,), bool)
        if self.charge_tables is None:
            return everything
        n = params.templates.num_sites[state.template_id]
        placed = charge_balance.placed_sites(state.order, state.step)
        allowed = charge_balance.action_mask(self.charge_tables, state.tokens, placed,
                                             n - state.step - 1)
        return jnp.where((state.step < n) & allowed.any(), allowed, everything)

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Observation, EnvState]:
        """Start an episode: draw a template (mixed mode), a start site and, in
        substitution mode, random initial elements."""
        k_tpl, k_start, k_sub = jax.random.split(key, 3)
        table = params.templates
        tid = jax.random.choice(k_tpl, params.template_probs.shape[0], p=params.template_probs)
        tid = tid.astype(jnp.int32)
        n = table.num_sites[tid]
        start = jax.random.randint(k_start, (), 0, n)
        order = table.fill_orders[tid, start]
        real = jnp.arange(self.max_sites) < n
        if self.substitution:
            random_tokens = jax.random.randint(k_sub, (self.max_sites,), 0, self.num_actions)
            tokens = jnp.where(real, random_tokens, self.empty_token)
        else:
            tokens = jnp.full((self.max_sites,), self.empty_token)
        state = EnvState(tokens=tokens.astype(jnp.int32), order=order,
                         step=jnp.zeros((), jnp.int32), template_id=tid)
        return self.observe(state, params), state

    def step_env(self, state: EnvState, action: jnp.ndarray, params: EnvParams):
        """One step without auto-reset: (obs, state, reward, terminated, truncated, info).

        Stepping an episode that has already finished changes nothing: it stays terminated,
        with reward 0 and no new oracle evaluation (``info['status']`` = NOT_EVALUATED)."""
        action, invalid_action = self._clip_action(action)
        n = params.templates.num_sites[state.template_id]
        # a finished episode stepped again (no auto-reset) keeps its crystal unchanged
        in_progress = state.step < n
        site = jnp.where(in_progress, state.order[jnp.minimum(state.step, self.max_sites - 1)],
                         self.max_sites)
        tokens = state.tokens.at[site].set(action, mode="drop")
        step = jnp.minimum(state.step + 1, n)
        terminated = step >= n
        finished_now = terminated & in_progress  # only these go to the oracle and get a reward
        value, status = self.oracle(tokens, state.template_id, finished_now, params)
        value = jnp.where(finished_now, value, jnp.nan).astype(jnp.float32)
        status = jnp.where(finished_now, status, int(Status.NOT_EVALUATED)).astype(jnp.int32)
        reward = jnp.where(finished_now, self.property.reward(value, status, params.reward), 0.0)
        new_state = EnvState(tokens=tokens, order=state.order, step=step,
                             template_id=state.template_id)
        info = {"property": value, "status": status, "invalid_action": invalid_action}
        return (self.observe(new_state, params), new_state, reward.astype(jnp.float32),
                terminated, jnp.zeros((), bool), info)

    def _clip_action(self, action) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(action int32 [] in range, bool [] it was out of range). Host integers of any
        width are clipped before the cast to int32, so 2**40 does not wrap around."""
        high = self.num_actions - 1
        if not isinstance(action, jax.Array):  # tracers are jax.Arrays too
            host = np.asarray(action)
            if host.dtype.kind in "iub":
                wide = host.astype(np.int64) if host.dtype != np.uint64 else host
                invalid = (wide < 0) | (wide > high)
                clipped = np.clip(wide, 0, high).astype(np.int32)
                return jnp.asarray(clipped), jnp.asarray(invalid)
        action = jnp.asarray(action)
        if not jnp.issubdtype(action.dtype, jnp.integer):
            action = jnp.floor(action)
        invalid = (action < 0) | (action > high)
        return jnp.clip(action, 0, high).astype(jnp.int32), invalid

    def step(self, key: jax.Array, state: EnvState, action: jnp.ndarray, params: EnvParams):
        """One step with auto-reset; see the class docstring for ``info``."""
        obs_st, state_st, reward, terminated, truncated, info = self.step_env(state, action, params)
        obs_re, state_re = self.reset(key, params)
        done = terminated | truncated
        pick = lambda a, b: jnp.where(done, a, b)  # noqa: E731
        state = jax.tree.map(pick, state_re, state_st)
        obs = jax.tree.map(pick, obs_re, obs_st)
        info = dict(info, final_observation=obs_st, final_state=state_st)
        return obs, state, reward, terminated, truncated, info

    # ---- host-side export ----------------------------------------------------------------
    def _single(self, state: EnvState, index: int | None) -> EnvState:
        leaves = jax.tree.map(np.asarray, state)
        if leaves.step.ndim > 0:
            if index is None:
                raise ValueError(
                    f"state holds a batch of shape {leaves.step.shape}; pass index= to pick one env")
            leaves = jax.tree.map(lambda x: x[index], leaves)
        elif index is not None:
            raise ValueError("index given but the state holds a single env")
        return leaves

    def symbols(self, state: EnvState, index: int | None = None) -> list[str | None]:
        """Element symbol of each real site of one env (None where still empty)."""
        s = self._single(state, index)
        n = self.templates[int(s.template_id)].num_sites
        return [self.vocab[int(k)] if k < self.num_actions else None for k in s.tokens[:n]]

    def to_structure(self, state: EnvState, index: int | None = None) -> Structure:
        """The decorated crystal of one env as a pymatgen Structure.

        Sites not filled yet are left out (a finished crystal has all of them). For a
        batched state give ``index`` (the env's position in the batch).
        """
        s = self._single(state, index)
        template = self.templates[int(s.template_id)]
        symbols = self.symbols(s)
        keep = [i for i, sym in enumerate(symbols) if sym is not None]
        if not keep:
            raise ValueError("no site is filled yet: nothing to export")
        return Structure(template.lattice, [symbols[i] for i in keep],
                         template.frac_coords[keep])

    def to_cif(self, state: EnvState, index: int | None = None) -> str:
        """CIF text of one env's crystal (see :meth:`to_structure`)."""
        from pymatgen.io.cif import CifWriter

        return str(CifWriter(self.to_structure(state, index)))

    def to_atoms(self, state: EnvState, index: int | None = None):
        """ASE Atoms of one env's crystal (periodic in all three directions)."""
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_atoms(self.to_structure(state, index))

    def __repr__(self) -> str:
        names = ", ".join(t.name for t in self.templates[:4])
        more = "" if len(self.templates) <= 4 else f", ... ({len(self.templates)} templates)"
        return (f"CrystalEnv(property={self.property_name!r}, oracle={self.oracle_name!r}, "
                f"templates=[{names}{more}], actions={self.num_actions}, "
                f"max_sites={self.max_sites}, max_edges={self.max_edges}, "
                f"substitution={self.substitution}"
                + (f", mask={self.mask!r})" if self.mask != "none" else ")"))
