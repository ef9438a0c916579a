"""Self-imitation (Oh et al., "Self-Imitation Learning", ICML 2018) for PPO and DQN.

An on-policy learner sees each sampled crystal once: a rare near-target crystal moves the
policy by one gradient step and is gone. Self-imitation keeps the transitions of the
best finished episodes in a small buffer and adds, at every gradient step, a loss that
imitates their actions where their Monte-Carlo return beats the critic's value:

    L_sil = mean_i [ -log pi(a_i | s_i) * max(R_i - V(s_i), 0) ]
            + value_coef * mean_i [ max(R_i - V(s_i), 0)^2 ] / 2

(the advantage in the first term is not differentiated). Transitions whose return is
already below V contribute nothing, so the term fades once the policy reaches the
returns it keeps. The advantage is not normalised, so ``sil_coef`` weighs it on the
reward's own scale. Everything is pure ``jnp`` with static shapes.

Which transitions are kept: whole episodes, ranked by the episode's reward (the
undiscounted sum over its steps, the same number on every step of it); each transition
carries its own discounted return ``R_i`` for the loss. Ranking by ``R_i`` instead would
split episodes (with a reward only at the last step, an early step of a worse episode
can outrank the last step of a better one). ``lax.top_k`` over buffer + new episodes keeps
the ``capacity`` best transitions (ties: the earlier ones), so a capacity that is a
multiple of the episode length keeps whole episodes; empty slots score ``-inf``.

:class:`EpisodeTrace` keeps each env's running episode until it ends (at most ``L``
steps: one per site), across PPO rollouts and DQN iterations alike, so an episode that
spans two rollouts is kept whole.

For value-based agents the same buffer gives a lower bound (Oh et al.; Tang, "Self-
Imitation Learning via Generalized Lower Bound Q-learning", NeurIPS 2020): when the
transitions and rewards are deterministic given the observation (as in the crystal env,
whose oracle is a function of the finished crystal), the Monte-Carlo return of any
episode is a return the optimal policy can at least match, so ``Q*(s, a) >= R`` and the
loss ``mean max(R - Q(s, a), 0)^2`` pushes up the values of the best crystals' actions
that the TD targets underrate. With random rewards it biases Q upwards.

Shapes: N envs, L longest episode, K capacity, S sampled transitions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class SILBuffer:
    """The kept transitions, leaves [K, ...]: obs (observation acted on), action int32,
    ret f32 (Monte-Carlo return from that step; ``-inf`` on an empty slot), score f32 (the
    reward of the episode it belongs to, which ranks it; ``-inf`` on an empty slot)."""

    obs: Any
    action: jax.Array
    ret: jax.Array
    score: jax.Array


@struct.dataclass
class EpisodeTrace:
    """The running episode of each env: obs, action, reward leaves [N, L, ...]; ``length``
    int32 [N] steps recorded so far (may exceed L: such an episode is never kept)."""

    obs: Any
    action: jax.Array
    reward: jax.Array
    length: jax.Array


def trace_init(example_obs: Any, num_envs: int, max_length: int) -> EpisodeTrace:
    """Empty traces of ``num_envs`` envs for episodes of at most ``max_length`` steps,
    shaped like one observation ``example_obs``."""
    return EpisodeTrace(
        obs=jax.tree.map(lambda x: jnp.zeros((num_envs, max_length, *x.shape), x.dtype),
                         example_obs),
        action=jnp.zeros((num_envs, max_length), jnp.int32),
        reward=jnp.zeros((num_envs, max_length), jnp.float32),
        length=jnp.zeros((num_envs,), jnp.int32))


def trace_step(trace: EpisodeTrace, obs: Any, action: jax.Array, reward: jax.Array,
               terminated: jax.Array, truncated: jax.Array, gamma: float
               ) -> tuple[EpisodeTrace, tuple[Any, jax.Array, jax.Array, jax.Array]]:
    """Record one step of every env (obs acted on [N, ...], action, reward, terminated,
    truncated [N]); an env whose episode ended starts a new trace.

    Returns (trace, candidates): the steps of every trace flattened (obs [N * L, ...],
    action, return, score, complete [N * L]), where ``complete`` marks the steps of
    episodes that terminated at this step (with their Monte-Carlo returns and the
    episode's undiscounted reward as score), for :func:`sil_add`. A truncated episode,
    or one longer than L, is never complete.
    """
    num_envs, max_length = trace.action.shape
    rows = jnp.arange(num_envs)
    slot = jnp.minimum(trace.length, max_length - 1)
    trace = trace.replace(
        obs=jax.tree.map(lambda t, o: t.at[rows, slot].set(o), trace.obs, obs),
        action=trace.action.at[rows, slot].set(action.astype(jnp.int32)),
        reward=trace.reward.at[rows, slot].set(reward.astype(jnp.float32)))
    steps = jnp.arange(max_length)
    recorded = steps[None, :] <= trace.length[:, None]  # [N, L]

    def backward(next_return, r):
        ret = r + gamma * next_return
        return ret, ret

    rewards = jnp.where(recorded, trace.reward, 0.0)
    _, returns = jax.lax.scan(backward, jnp.zeros(num_envs), rewards.T, reverse=True)
    kept = terminated & (trace.length < max_length)
    complete = recorded & kept[:, None]
    score = jnp.broadcast_to(rewards.sum(1, keepdims=True), rewards.shape)
    candidates = (jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), trace.obs),
                  trace.action.reshape(-1), returns.T.reshape(-1), score.reshape(-1),
                  complete.reshape(-1))
    trace = trace.replace(length=jnp.where(terminated | truncated, 0, trace.length + 1))
    return trace, candidates


def sil_init(example_obs: Any, capacity: int) -> SILBuffer:
    """An empty buffer of ``capacity`` transitions shaped like one observation
    ``example_obs`` (leaves without the batch axis)."""
    return SILBuffer(
        obs=jax.tree.map(lambda x: jnp.zeros((capacity, *x.shape), x.dtype), example_obs),
        action=jnp.zeros((capacity,), jnp.int32),
        ret=jnp.full((capacity,), -jnp.inf, jnp.float32),
        score=jnp.full((capacity,), -jnp.inf, jnp.float32))


def sil_add(buffer: SILBuffer, obs: Any, action: jax.Array, ret: jax.Array,
            score: jax.Array, complete: jax.Array) -> SILBuffer:
    """Keep the ``K`` best-scored transitions of the buffer and new ones (leaves [B, ...];
    ``score`` f32 [B] their episodes' rewards; ``complete`` bool [B]: transitions without a
    complete, finite return are not kept)."""
    capacity = buffer.ret.shape[0]
    usable = complete & jnp.isfinite(ret) & jnp.isfinite(score)
    scores = jnp.concatenate([buffer.score, jnp.where(usable, score, -jnp.inf)])
    _, keep = jax.lax.top_k(scores, capacity)
    merged = SILBuffer(
        obs=jax.tree.map(lambda a, b: jnp.concatenate([a, b]), buffer.obs, obs),
        action=jnp.concatenate([buffer.action, action.astype(jnp.int32)]),
        ret=jnp.concatenate([buffer.ret, jnp.where(usable, ret, -jnp.inf)]), score=scores)
    return jax.tree.map(lambda x: x[keep], merged)


def sil_record(buffer: SILBuffer, trace: EpisodeTrace, obs: Any, action: jax.Array,
               reward: jax.Array, terminated: jax.Array, truncated: jax.Array, gamma: float
               ) -> tuple[SILBuffer, EpisodeTrace]:
    """One step of every env (leaves [N, ...]) into the traces (:func:`trace_step`); the
    episodes that terminated enter the buffer (:func:`sil_add`, skipped at steps where
    none did). Returns (buffer, trace)."""
    trace, candidates = trace_step(trace, obs, action, reward, terminated, truncated, gamma)
    buffer = jax.lax.cond(terminated.any(), lambda b: sil_add(b, *candidates), lambda b: b,
                          buffer)
    return buffer, trace


def sil_record_rollout(buffer: SILBuffer, trace: EpisodeTrace, obs: Any, action: jax.Array,
                       reward: jax.Array, terminated: jax.Array, truncated: jax.Array,
                       gamma: float) -> tuple[SILBuffer, EpisodeTrace]:
    """:func:`sil_record` over the steps of a time-major rollout (leaves [T, N, ...])."""
    def step(carry, xs):
        return sil_record(*carry, *xs, gamma), None

    (buffer, trace), _ = jax.lax.scan(step, (buffer, trace),
                                      (obs, action, reward, terminated, truncated))
    return buffer, trace


#: folded into an update's key for the self-imitation draws: a constant no
#: ``jax.random.split`` index reaches, so the draws are independent of the update's own
#: (and the update's draws with self-imitation off are unchanged)
SIL_KEY = 0x5111_0001


def sil_key(key: jax.Array) -> jax.Array:
    """The self-imitation sampling key of an update's ``key``."""
    return jax.random.fold_in(key, SIL_KEY)


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


def lower_bound_loss(q_taken: jax.Array, batch: SILBuffer) -> jax.Array:
    """``mean max(R - Q(s, a), 0)^2`` over the filled slots of sampled transitions
    (``q_taken`` f32 [S]: Q of the stored action); f32 [] (0 while the buffer is empty)."""
    filled = jnp.isfinite(batch.ret)
    gap = jnp.maximum(jnp.where(filled, batch.ret - q_taken, 0.0), 0.0)
    return jnp.square(gap).sum() / jnp.maximum(filled.sum(), 1)


__all__ = ["SIL_KEY", "EpisodeTrace", "SILBuffer", "lower_bound_loss", "sil_add", "sil_init",
           "sil_key", "sil_loss", "sil_record", "sil_record_rollout", "sil_sample", "trace_init",
           "trace_step"]
