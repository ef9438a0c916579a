"""Self-imitation (Oh et al., "Self-Imitation Learning", ICML 2018) for on-policy agents.

An on-policy learner sees each sampled crystal once: a rare near-target crystal moves the
policy by one gradient step and is gone. Self-imitation keeps the transitions of the
best finished episodes in a small buffer and adds, at every gradient step, a loss that
imitates their actions where their Monte-Carlo return beats the critic's value:

    L_sil = mean_i [ -log pi(a_i | s_i) * max(R_i - V(s_i), 0) ]
            + value_coef * mean_i [ max(R_i - V(s_i), 0)^2 ] / 2

(the advantage in the first term is not differentiated). Transitions whose return is
already below V contribute nothing, so the term fades once the policy reaches the
returns it keeps. Everything is pure ``jnp`` with static shapes: the buffer keeps the
``capacity`` highest returns seen (``lax.top_k`` over buffer + rollout), empty slots
hold a return of ``-inf``.

Shapes: T rollout steps, N envs, K capacity, S sampled transitions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class SILBuffer:
    """The kept transitions, leaves [K, ...]: obs (observation acted on), action int32,
    ret f32 (Monte-Carlo return from that step; ``-inf`` on an empty slot)."""

    obs: Any
    action: jax.Array
    ret: jax.Array


def monte_carlo_returns(reward: jax.Array, terminated: jax.Array, truncated: jax.Array,
                        gamma: float) -> tuple[jax.Array, jax.Array]:
    """Discounted return of each step of a time-major rollout (inputs [T, N]).

    R_t = r_t + gamma * R_{t+1}, restarting at every episode end. A return is complete
    only when its episode terminated inside the rollout (a truncated episode, or one
    still running when the rollout ended, has no Monte-Carlo return).

    Returns (returns f32 [T, N], complete bool [T, N]).
    """
    def backward(carry, x):
        next_return, next_complete = carry
        r, term, trunc = x
        ended = term | trunc
        ret = r + gamma * jnp.where(ended, 0.0, next_return)
        complete = term | (~ended & next_complete)
        return (ret, complete), (ret, complete)

    init = (jnp.zeros_like(reward[0]), jnp.zeros(reward.shape[1:], bool))
    _, (returns, complete) = jax.lax.scan(backward, init, (reward, terminated, truncated),
                                          reverse=True)
    return returns, complete


def sil_init(example_obs: Any, capacity: int) -> SILBuffer:
    """An empty buffer of ``capacity`` transitions shaped like one observation
    ``example_obs`` (leaves without the batch axis)."""
    return SILBuffer(
        obs=jax.tree.map(lambda x: jnp.zeros((capacity, *x.shape), x.dtype), example_obs),
        action=jnp.zeros((capacity,), jnp.int32),
        ret=jnp.full((capacity,), -jnp.inf, jnp.float32))


def sil_add(buffer: SILBuffer, obs: Any, action: jax.Array, ret: jax.Array,
            complete: jax.Array) -> SILBuffer:
    """Keep the ``K`` highest returns of the buffer and new transitions (leaves [B, ...];
    ``complete`` bool [B]: transitions without a complete return are not kept)."""
    capacity = buffer.ret.shape[0]
    rets = jnp.concatenate([buffer.ret, jnp.where(complete, ret, -jnp.inf)])
    _, keep = jax.lax.top_k(rets, capacity)
    merged = SILBuffer(
        obs=jax.tree.map(lambda a, b: jnp.concatenate([a, b]), buffer.obs, obs),
        action=jnp.concatenate([buffer.action, action.astype(jnp.int32)]), ret=rets)
    return jax.tree.map(lambda x: x[keep], merged)


def sil_sample(buffer: SILBuffer, key: jax.Array, shape: tuple[int, ...]) -> SILBuffer:
    """Transitions drawn uniformly (with replacement) from the filled slots, leaves
    [*shape, ...]; while the buffer is empty the draws are empty slots (``ret`` -inf),
    which :func:`sil_loss` ignores."""
    filled = jnp.isfinite(buffer.ret)
    logits = jnp.where(filled, 0.0, -jnp.inf)
    logits = jnp.where(filled.any(), logits, 0.0)
    index = jax.random.categorical(key, logits, shape=shape)
    return jax.tree.map(lambda x: x[index], buffer)


def sil_loss(logits: jax.Array, value: jax.Array, batch: SILBuffer, value_coef: float
             ) -> jax.Array:
    """The self-imitation loss (module docstring) of sampled transitions: ``logits`` f32
    [S, A] (invalid actions masked), ``value`` f32 [S] of ``batch.obs``. Empty slots count
    for nothing; f32 [] (0 while the buffer is empty)."""
    filled = jnp.isfinite(batch.ret)
    gap = jnp.where(filled, batch.ret - value, 0.0)
    clipped = jnp.maximum(gap, 0.0)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), batch.action[:, None],
                                   axis=1)[:, 0]
    count = jnp.maximum(filled.sum(), 1)
    policy = -(jnp.where(filled, log_prob, 0.0) * jax.lax.stop_gradient(clipped)).sum() / count
    return policy + value_coef * 0.5 * jnp.square(clipped).sum() / count


__all__ = ["SILBuffer", "monte_carlo_returns", "sil_add", "sil_init", "sil_loss", "sil_sample"]
