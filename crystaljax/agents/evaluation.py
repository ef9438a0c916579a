"""Greedy-policy evaluation: run one full episode in each of many envs, jittable."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from crystaljax.agents.exploration import random_valid_action
from crystaljax.oracles.base import Status


def evaluate_policy(env, env_params, policy: Callable[[jax.Array, object], jax.Array],
                    key: jax.Array, num_episodes: int) -> dict[str, jax.Array]:
    """Roll out ``policy`` ((key, batched obs) -> int32 actions [B]) for one episode in each of
    ``num_episodes`` envs (random start sites, templates drawn as at training time).

    Finished envs are frozen (no auto-reset), so every episode is counted once and its
    final crystal is kept. Returns, with B = num_episodes and S = max sites:
      mean_reward f32 []; rewards f32 [B]; properties f32 [B] (nan on failure);
      statuses int32 [B] (0 = OK); abs_errors f32 [B]: |property - target| when the
      env params carry a reward target, else nan; median_abs_error f32 [] (over the
      episodes with a property value);
      tokens int32 [B, S]; template_ids int32 [B].
    """
    k_reset, k_policy = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_episodes),
                                                        env_params)
    step = jax.vmap(env.step_env, in_axes=(0, 0, None))
    B = num_episodes
    init = (obs, state, jnp.zeros(B, bool), jnp.zeros(B, jnp.float32),
            jnp.full(B, jnp.nan, jnp.float32), jnp.full(B, int(Status.NOT_EVALUATED), jnp.int32))

    def body(carry, step_key):
        obs, state, done, rewards, props, statuses = carry
        next_obs, next_state, reward, terminated, truncated, info = step(
            state, policy(step_key, obs), env_params)
        first = (terminated | truncated) & ~done
        rewards = jnp.where(first, reward, rewards)
        props = jnp.where(first, info["property"], props)
        statuses = jnp.where(first, info["status"], statuses)
        keep = lambda old, new: jnp.where(  # noqa: E731
            done.reshape(done.shape + (1,) * (new.ndim - 1)), old, new)
        obs = jax.tree.map(keep, obs, next_obs)
        state = jax.tree.map(keep, state, next_state)
        return (obs, state, done | terminated | truncated, rewards, props, statuses), None

    (_, state, _, rewards, props, statuses), _ = jax.lax.scan(
        body, init, jax.random.split(k_policy, env.max_sites))
    target = getattr(getattr(env_params, "reward", None), "target", None)
    abs_errors = (jnp.abs(props - target) if target is not None
                  else jnp.full(B, jnp.nan, jnp.float32))
    return {
        "mean_reward": rewards.mean(),
        "rewards": rewards,
        "properties": props,
        "statuses": statuses,
        "abs_errors": abs_errors.astype(jnp.float32),
        "median_abs_error": jnp.nanmedian(abs_errors).astype(jnp.float32),
        "tokens": state.tokens,
        "template_ids": state.template_id,
    }


def uniform_random_policy(key: jax.Array, obs) -> jax.Array:
    """A uniformly random valid action per env (the baseline policy): int32 [B]."""
    return random_valid_action(key, obs.action_mask)
