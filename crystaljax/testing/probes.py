"""Probe environments with known optimal values, for testing agents (rejax-style).

:class:`ProbeEnv` speaks the crystal env's interface (``reset``, ``step`` with auto-reset
and the same ``info`` keys, ``step_env``, :class:`~crystaljax.env.types.Observation` on a
tiny graph), so any agent that runs on :class:`~crystaljax.env.env.CrystalEnv` runs on it.
It implements the env interface (:class:`crystaljax.env.base.Env`), ``reward_range`` included.
Params are ``None``. Each episode is one probe *kind*, drawn uniformly at reset from the
env's ``kinds``; the kind is ``template_id`` and is shown one-hot in ``globals``, so one
env (one compilation) can test several probes at once. Shapes are padded to the largest
kind: S = 2 sites, A = 4 actions; unused sites are padding (node_mask False) and unused
actions are masked.

Kinds (reward only at the last step, gamma = the agent's discount):

* ``one_step``: 1 site, 2 actions; a cue bit in ``globals[0]``; reward +1 for the action
  equal to the cue, -1 otherwise. Q*(s, cue) = 1, Q*(s, other) = -1.
* ``two_step``: 2 sites, 2 actions; reward +1 if the second action repeats the first
  (read from the tokens), else 0. Q*(s0, a) = gamma, Q*(s1, repeat) = 1, other 0.
* ``masked``: 2 sites, 4 actions; action 0 is invalid at the second step (and at the
  first with probability 1/2); the reward is [1, 0.5, 0.25, 0][a1], -1 if an invalid
  action was taken. Q*(s0, valid a) = gamma * 0.5 (bootstrapping from the masked-out
  action would give gamma * 1); Q*(s1, 1) = 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from crystaljax.env.base import EnvBase
from crystaljax.env.specs import ArraySpec
from crystaljax.env.types import Observation

#: kind name -> (sites, actions)
PROBE_KINDS: dict[str, tuple[int, int]] = {"one_step": (1, 2), "two_step": (2, 2),
                                           "masked": (2, 4)}
#: optimal return of each kind from its first state (gamma-independent: all reward is
#: collected at the last step and the return counts it undiscounted)
OPTIMAL_RETURN = {"one_step": 1.0, "two_step": 1.0, "masked": 0.5}
MASKED_REWARDS = (1.0, 0.5, 0.25, 0.0)
#: width of the Gaussian edge features of the probe graphs
PROBE_RBF = 4


@struct.dataclass
class ProbeState:
    """tokens int32 [S] (A = empty); step int32 []; template_id int32 []: the kind's
    index in ``env.kinds``; cue int32 [] (0/1); valid0 bool []: action 0 allowed at the
    first step of a ``masked`` episode; invalid bool []: an invalid action was taken."""

    tokens: jax.Array
    step: jax.Array
    template_id: jax.Array
    cue: jax.Array
    valid0: jax.Array
    invalid: jax.Array


class ProbeEnv(EnvBase):
    """Probe episodes of the given kinds (see the module docstring).

    Args:
      kinds: names from ``PROBE_KINDS``; each reset draws one uniformly.
    """

    property_name: str = "probe"
    #: episodes end by termination only
    can_truncate: bool = False

    def __init__(self, kinds: Sequence[str] = tuple(PROBE_KINDS)):
        unknown = sorted(set(kinds) - set(PROBE_KINDS))
        if unknown or not kinds:
            raise ValueError(f"unknown probe kinds {unknown}; choose from {sorted(PROBE_KINDS)}")
        self.kinds = tuple(kinds)
        self.max_sites = max(PROBE_KINDS[k][0] for k in self.kinds)
        self.num_actions = max(PROBE_KINDS[k][1] for k in self.kinds)
        self._sites = jnp.asarray([PROBE_KINDS[k][0] for k in self.kinds], jnp.int32)
        self._actions = jnp.asarray([PROBE_KINDS[k][1] for k in self.kinds], jnp.int32)
        self._kind_ids = {k: i for i, k in enumerate(self.kinds)}

    @property
    def empty_token(self) -> int:
        return self.num_actions

    def reward_range(self, params=None) -> tuple[float, float]:
        """Every probe reward lies in [-1, 1]."""
        return -1.0, 1.0

    def action_spec(self) -> ArraySpec:
        return ArraySpec((), np.int32, 0, self.num_actions - 1)

    def observation_spec(self) -> Observation:
        """Shapes and dtypes of an observation (bounds left open)."""
        example = self.observe(self.reset(jax.random.PRNGKey(0))[1])
        return jax.tree.map(lambda x: ArraySpec(x.shape, np.dtype(x.dtype)), example)

    def kind_id(self, name: str) -> int:
        """Index (= template_id) of kind ``name``; -1 if this env does not have it."""
        return self._kind_ids.get(name, -1)

    # ---- pieces of the MDP ---------------------------------------------------------------
    def action_mask(self, state: ProbeState) -> jax.Array:
        """bool [A]: actions allowed at the state's step."""
        actions = jnp.arange(self.num_actions)
        mask = actions < self._actions[state.template_id]
        is_masked_kind = state.template_id == self.kind_id("masked")
        allow0 = ~is_masked_kind | ((state.step == 0) & state.valid0)
        return mask & ((actions > 0) | allow0)

    def final_reward(self, state: ProbeState) -> jax.Array:
        """f32 []: reward of a finished episode (before the invalid-action penalty)."""
        one_step = jnp.where(state.tokens[0] == state.cue, 1.0, -1.0)
        two_step = jnp.where(state.tokens[1] == state.tokens[0], 1.0, 0.0)
        masked = jnp.asarray(MASKED_REWARDS, jnp.float32)[
            jnp.clip(state.tokens[1], 0, len(MASKED_REWARDS) - 1)]
        by_kind = {"one_step": one_step, "two_step": two_step, "masked": masked}
        return jnp.stack([by_kind[k] for k in self.kinds])[state.template_id]

    def observe(self, state: ProbeState, params=None) -> Observation:
        """Observation of a state: a ring graph over the kind's sites."""
        S = self.max_sites
        site = jnp.arange(S, dtype=jnp.int32)
        n = self._sites[state.template_id]
        receivers = (site + 1) % S
        senders = jnp.concatenate([site, receivers])
        receivers = jnp.concatenate([receivers, site])
        edge_mask = (senders < n) & (receivers < n) & (senders != receivers)
        distances = jnp.where(edge_mask, 2.0, 0.0).astype(jnp.float32)
        centers = jnp.linspace(0.0, 3.0, PROBE_RBF)
        features = jnp.where(edge_mask[:, None], jnp.exp(-((distances[:, None] - centers) ** 2)),
                             0.0)
        kind_onehot = jax.nn.one_hot(state.template_id, len(self.kinds))
        progress = state.step.astype(jnp.float32) / n
        return Observation(
            tokens=state.tokens, focus=(site == state.step) & (state.step < n),
            node_mask=site < n, edge_features=features.astype(jnp.float32), distances=distances,
            senders=senders, receivers=receivers, edge_mask=edge_mask,
            globals=jnp.concatenate([jnp.stack([state.cue.astype(jnp.float32), progress]),
                                     kind_onehot]).astype(jnp.float32),
            action_mask=self.action_mask(state), template_id=state.template_id)

    # ---- gymnax-style API ----------------------------------------------------------------
    def reset(self, key: jax.Array, params=None) -> tuple[Observation, ProbeState]:
        """Start an episode of a uniformly drawn kind."""
        k_kind, k_cue, k_mask = jax.random.split(key, 3)
        state = ProbeState(
            tokens=jnp.full((self.max_sites,), self.empty_token, jnp.int32),
            step=jnp.zeros((), jnp.int32),
            template_id=jax.random.randint(k_kind, (), 0, len(self.kinds)).astype(jnp.int32),
            cue=jax.random.bernoulli(k_cue).astype(jnp.int32),
            valid0=jax.random.bernoulli(k_mask), invalid=jnp.zeros((), bool))
        return self.observe(state), state

    def step_env(self, state: ProbeState, action: jax.Array, params=None):
        """One step without auto-reset (a finished episode stays unchanged):
        (obs, state, reward, terminated, truncated, info)."""
        action = jnp.asarray(action, jnp.int32)
        n = self._sites[state.template_id]
        in_progress = state.step < n
        valid = self.action_mask(state)[jnp.clip(action, 0, self.num_actions - 1)]
        invalid = state.invalid | (in_progress & ~valid)
        site = jnp.where(in_progress, state.step, self.max_sites)
        new = state.replace(tokens=state.tokens.at[site].set(action, mode="drop"),
                            step=jnp.minimum(state.step + 1, n), invalid=invalid)
        terminated = new.step >= n
        reward = jnp.where(terminated, jnp.where(invalid, -1.0, self.final_reward(new)), 0.0)
        info = {"property": jnp.where(terminated, reward, jnp.nan).astype(jnp.float32),
                "status": jnp.where(terminated, 0, -1).astype(jnp.int32),
                "invalid_action": in_progress & ~valid}
        return (self.observe(new), new, reward.astype(jnp.float32), terminated,
                jnp.zeros((), bool), info)

    def step(self, key: jax.Array, state: ProbeState, action: jax.Array, params=None):
        """One step with auto-reset; ``info`` as the crystal env's (final_observation,
        final_state, property = the final reward, status = 0 when terminal,
        invalid_action = the action was masked out)."""
        obs_st, state_st, reward, terminated, truncated, info = self.step_env(state, action)
        obs_re, state_re = self.reset(key)
        pick = lambda a, b: jnp.where(terminated, a, b)  # noqa: E731
        obs = jax.tree.map(pick, obs_re, obs_st)
        state = jax.tree.map(pick, state_re, state_st)
        info = dict(info, final_observation=obs_st, final_state=state_st)
        return obs, state, reward, terminated, truncated, info
