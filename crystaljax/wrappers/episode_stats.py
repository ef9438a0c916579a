"""Vectorised env with episode statistics (gymnax ``LogWrapper``-style), used by every agent.

:class:`VecEpisodeStats` steps ``num_envs`` copies of a gymnax-style env (``reset``/``step``
vmapped, auto-reset as the env's own) and carries an :class:`EpisodeStats` pytree next to
the env states: the running return of every env, the best finished crystal over all of
them, and counters of finished episodes, oracle failures and invalid actions. Each step
also reports what happened in it (:data:`STEP_STATS`), so an agent's metrics come from one
place instead of per-agent bookkeeping.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from crystaljax.oracles.base import FLOOR_STATUSES, Status

#: statuses that are an answer about the crystal, not a failure: OK and the floor statuses
#: (e.g. NO_MINIMUM: no E(V) minimum in the searched range)
_ANSWERED = tuple(int(s) for s in (Status.OK, *sorted(FLOOR_STATUSES)))

#: per-step statistics returned by :meth:`VecEpisodeStats.step` (summed over the N envs)
STEP_STATS = ("episodes_done", "terminal_reward_sum", "oracle_failures", "invalid_actions")


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
class EpisodeStats:
    """episode_return f32 [N]: undiscounted return of each env's running episode;
    best: BestCrystal over every finished episode; episodes, oracle_failures,
    invalid_actions: int32 [] totals since reset (finished episodes, finished episodes
    whose ``info['status'] != 0``, steps with ``info['invalid_action']``)."""

    episode_return: jax.Array
    best: BestCrystal
    episodes: jax.Array
    oracle_failures: jax.Array
    invalid_actions: jax.Array


@struct.dataclass
class VecEnvState:
    """inner: the N env states (leaves [N, ...]); stats: EpisodeStats."""

    inner: Any
    stats: EpisodeStats


class VecEpisodeStats:
    """``num_envs`` copies of ``env`` stepped together, with episode statistics.

    ``reset(key, params) -> (obs [N], VecEnvState)``;
    ``step(key, state, actions [N], params) -> (obs, state, reward, terminated, truncated,
    info, step_stats)``: the env's outputs with a leading axis N, and ``step_stats`` a dict
    of :data:`STEP_STATS` for this step (int32 / f32 [] sums over the N envs). ``info``
    must hold ``property``, ``status`` and ``final_state`` (with ``tokens`` and
    ``template_id``); ``invalid_action`` is optional (False when missing).
    """

    def __init__(self, env, num_envs: int):
        self.env = env
        self.num_envs = int(num_envs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def reset(self, key: jax.Array, params: Any) -> tuple[Any, VecEnvState]:
        obs, inner = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(key, self.num_envs), params)
        zero = jnp.zeros((), jnp.int32)
        stats = EpisodeStats(episode_return=jnp.zeros((self.num_envs,), jnp.float32),
                             best=BestCrystal.empty(self.env.max_sites, self.env.num_actions),
                             episodes=zero, oracle_failures=zero, invalid_actions=zero)
        return obs, VecEnvState(inner=inner, stats=stats)

    def step(self, key: jax.Array, state: VecEnvState, actions: jax.Array, params: Any):
        obs, inner, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key, self.num_envs), state.inner, actions, params)
        done = terminated | truncated
        invalid = jnp.asarray(info.get("invalid_action", jnp.zeros_like(done)), bool)
        final = info["final_state"]
        step_stats = {
            "episodes_done": done.sum().astype(jnp.int32),
            "terminal_reward_sum": jnp.sum(jnp.where(done, reward, 0.0)).astype(jnp.float32),
            "oracle_failures": jnp.sum(done & ~jnp.isin(info["status"], jnp.array(_ANSWERED))
                                       ).astype(jnp.int32),
            "invalid_actions": invalid.sum().astype(jnp.int32),
        }
        stats = state.stats
        running = stats.episode_return + reward
        stats = EpisodeStats(
            episode_return=jnp.where(done, 0.0, running),
            best=stats.best.update(done, reward, info["property"], final.tokens,
                                   final.template_id),
            episodes=stats.episodes + step_stats["episodes_done"],
            oracle_failures=stats.oracle_failures + step_stats["oracle_failures"],
            invalid_actions=stats.invalid_actions + step_stats["invalid_actions"])
        return (obs, VecEnvState(inner=inner, stats=stats), reward, terminated, truncated, info,
                step_stats)


__all__ = ["STEP_STATS", "BestCrystal", "EpisodeStats", "VecEnvState", "VecEpisodeStats"]
