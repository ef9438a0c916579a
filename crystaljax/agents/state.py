"""The training state of the value-based agents and its episode bookkeeping."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from crystaljax.agents.buffer import ReplayBuffer


@struct.dataclass
class BestCrystal:
    """The best finished crystal seen in training: reward f32 [], property f32 [],
    tokens int32 [S], template_id int32 [] (reward -inf and property nan before any)."""

    reward: jax.Array
    property: jax.Array
    tokens: jax.Array
    template_id: jax.Array

    @classmethod
    def empty(cls, max_sites: int, empty_token: int) -> "BestCrystal":
        return cls(reward=jnp.float32(-jnp.inf), property=jnp.float32(jnp.nan),
                   tokens=jnp.full((max_sites,), empty_token, jnp.int32),
                   template_id=jnp.zeros((), jnp.int32))

    def update(self, done: jax.Array, reward: jax.Array, prop: jax.Array, tokens: jax.Array,
               template_id: jax.Array) -> "BestCrystal":
        """Fold in a batch of steps (done, reward, prop, template_id [N]; tokens [N, S])."""
        candidate = jnp.where(done, reward, -jnp.inf)
        i = jnp.argmax(candidate)
        better = candidate[i] > self.reward
        pick = lambda new, old: jnp.where(better, new, old)  # noqa: E731
        return BestCrystal(reward=pick(candidate[i], self.reward),
                           property=pick(prop[i], self.property),
                           tokens=pick(tokens[i], self.tokens),
                           template_id=pick(template_id[i], self.template_id))


@struct.dataclass
class AgentState:
    """Everything a value-based agent carries between iterations (a pytree).

    params, target_params: network parameters; opt_state: optax state;
    buffer: ReplayBuffer; env_state, obs: the N vectorised envs (leaves [N, ...]);
    key: PRNG key; iteration, env_steps, updates: int32 [] counters;
    best: BestCrystal found so far.
    """

    params: Any
    target_params: Any
    opt_state: Any
    buffer: ReplayBuffer
    env_state: Any
    obs: Any
    key: jax.Array
    iteration: jax.Array
    env_steps: jax.Array
    updates: jax.Array
    best: BestCrystal
