"""Circular replay buffer as a pytree, time-major over vectorised envs, with uniform or
proportional-prioritised sampling and n-step returns computed at sampling time.

Layout: every leaf of ``data`` has shape [T, N, ...]: T time rows (capacity
``buffer_size // num_envs``), N envs. Row ``t`` holds the transition each env made at
one iteration, so a window of n consecutive rows of one env column is n consecutive
steps of that env. Sampling draws (row, env) pairs among rows that have n - 1 newer rows
written after them, and the n-step return stops at the first termination or truncation
in the window: nothing is ever bootstrapped across an episode end.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
    """One env step. obs, next_obs: observation pytrees; action int32 []; reward f32 [];
    terminated, truncated bool []. ``next_obs`` is the observation the action led to (the
    final observation of an episode, not the next episode's first)."""

    obs: Any
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: Any


@struct.dataclass
class NStepBatch:
    """A sampled batch of n-step transitions (B samples).

    obs [B, ...]; action int32 [B]; reward f32 [B]: discounted sum of up to n rewards;
    discount f32 [B]: gamma^m for the m steps summed, 0 when the window ended in a
    termination; next_obs [B, ...]: the observation to bootstrap from.
    """

    obs: Any
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    next_obs: Any


@struct.dataclass
class ReplayBuffer:
    """data: Transition with leaves [T, N, ...]; priorities f32 [T, N]; position int32 []
    (next row to write); size int32 [] (rows written, at most T); max_priority f32 []."""

    data: Transition
    priorities: jax.Array
    position: jax.Array
    size: jax.Array
    max_priority: jax.Array

    @property
    def capacity(self) -> int:
        """Time rows T."""
        return self.priorities.shape[0]

    @property
    def num_envs(self) -> int:
        return self.priorities.shape[1]


def buffer_init(example: Transition, capacity: int, num_envs: int) -> ReplayBuffer:
    """An empty buffer of ``capacity`` time rows for ``num_envs`` envs, with leaves shaped
    like ``example`` (a single, unbatched transition)."""
    if capacity < 1:
        raise ValueError(f"buffer capacity must be >= 1 time row, got {capacity}")
    data = jax.tree.map(
        lambda x: jnp.zeros((capacity, num_envs, *jnp.shape(x)), jnp.asarray(x).dtype), example)
    return ReplayBuffer(data=data, priorities=jnp.zeros((capacity, num_envs), jnp.float32),
                        position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32),
                        max_priority=jnp.ones((), jnp.float32))


def buffer_add(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Write one row: ``batch`` leaves are [N, ...] (one transition per env). New entries
    get the highest priority seen so far."""
    pos = buffer.position
    data = jax.tree.map(lambda store, x: store.at[pos].set(x), buffer.data, batch)
    priorities = buffer.priorities.at[pos].set(buffer.max_priority)
    return buffer.replace(data=data, priorities=priorities,
                          position=(pos + 1) % buffer.capacity,
                          size=jnp.minimum(buffer.size + 1, buffer.capacity))


def _valid_rows(buffer: ReplayBuffer, n_step: int) -> tuple[jax.Array, jax.Array]:
    """(oldest written row, number of rows that start a full n-step window)."""
    oldest = (buffer.position - buffer.size) % buffer.capacity
    return oldest, jnp.maximum(buffer.size - (n_step - 1), 0)


def sample_indices(buffer: ReplayBuffer, key: jax.Array, batch_size: int, n_step: int,
                   priority_exponent: float | None = None
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw ``batch_size`` (row, env) pairs with replacement.

    Uniform when ``priority_exponent`` is None, else with probability proportional to
    ``priority ** priority_exponent``. Only rows with n - 1 newer rows are eligible.

    Returns (rows int32 [B], envs int32 [B], probabilities f32 [B] of the drawn pairs).
    """
    T, N = buffer.capacity, buffer.num_envs
    oldest, num_valid = _valid_rows(buffer, n_step)
    age = (jnp.arange(T) - oldest) % T  # 0 = oldest row
    row_ok = age < num_valid
    if priority_exponent is None:
        weights = jnp.broadcast_to(row_ok[:, None], (T, N)).astype(jnp.float32)
    else:
        weights = jnp.where(row_ok[:, None], buffer.priorities ** priority_exponent, 0.0)
    probs = weights.reshape(-1) / jnp.maximum(weights.sum(), 1e-12)
    flat = jax.random.choice(key, T * N, (batch_size,), replace=True, p=probs)
    return (flat // N).astype(jnp.int32), (flat % N).astype(jnp.int32), probs[flat]


def gather_nstep(buffer: ReplayBuffer, rows: jax.Array, envs: jax.Array, n_step: int,
                 gamma: float) -> NStepBatch:
    """n-step transitions starting at (rows, envs) [B]; see :class:`NStepBatch`.

    R = sum_{k<m} gamma^k r_{t+k}, where m <= n stops after the first terminated or
    truncated step. A termination gives discount 0; a truncation bootstraps from the
    stored final observation with gamma^m.
    """
    T = buffer.capacity
    window = (rows[:, None] + jnp.arange(n_step)[None, :]) % T  # [B, n]
    env_cols = envs[:, None]
    rewards = buffer.data.reward[window, env_cols]
    terminated = buffer.data.terminated[window, env_cols]
    ended = terminated | buffer.data.truncated[window, env_cols]
    # alive[k]: no episode end strictly before step k of the window
    alive = jnp.concatenate([jnp.ones_like(ended[:, :1]),
                             jnp.cumprod(~ended[:, :-1], axis=1).astype(bool)], axis=1)
    discounts = gamma ** jnp.arange(n_step, dtype=jnp.float32)
    reward = jnp.sum(jnp.where(alive, rewards * discounts, 0.0), axis=1)
    last = jnp.sum(alive, axis=1) - 1  # index in the window of the last step used
    last_row = jnp.take_along_axis(window, last[:, None], axis=1)[:, 0]
    last_terminated = jnp.take_along_axis(terminated, last[:, None], axis=1)[:, 0]
    discount = jnp.where(last_terminated, 0.0, gamma ** (last + 1).astype(jnp.float32))
    return NStepBatch(
        obs=jax.tree.map(lambda x: x[rows, envs], buffer.data.obs),
        action=buffer.data.action[rows, envs],
        reward=reward.astype(jnp.float32),
        discount=discount.astype(jnp.float32),
        next_obs=jax.tree.map(lambda x: x[last_row, envs], buffer.data.next_obs),
    )


def update_priorities(buffer: ReplayBuffer, rows: jax.Array, envs: jax.Array,
                      priorities: jax.Array) -> ReplayBuffer:
    """Set the priorities of sampled (rows, envs) [B] to ``priorities`` [B] (> 0)."""
    return buffer.replace(priorities=buffer.priorities.at[rows, envs].set(priorities),
                          max_priority=jnp.maximum(buffer.max_priority, priorities.max()))
