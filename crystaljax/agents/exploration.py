"""Exploration: linear epsilon schedule and masked epsilon-greedy action selection."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from crystaljax.models.layers import MASKED_LOGIT


def linear_schedule(start: float, end: float, duration: float, t: jax.Array) -> jax.Array:
    """``start`` -> ``end`` linearly over ``duration`` units of ``t``, then ``end`` (f32 [])."""
    frac = jnp.clip(t.astype(jnp.float32) / max(float(duration), 1.0), 0.0, 1.0)
    return jnp.float32(start) + frac * (jnp.float32(end) - jnp.float32(start))


def greedy(q_values: jax.Array) -> jax.Array:
    """argmax over the last axis of masked Q-values [B, A] -> int32 [B]."""
    return jnp.argmax(q_values, axis=-1).astype(jnp.int32)


def random_valid_action(key: jax.Array, action_mask: jax.Array) -> jax.Array:
    """A uniformly drawn valid action per row of ``action_mask`` bool [B, A] -> int32 [B]."""
    logits = jnp.where(action_mask, 0.0, MASKED_LOGIT)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def epsilon_greedy(key: jax.Array, q_values: jax.Array, action_mask: jax.Array,
                   epsilon: jax.Array) -> jax.Array:
    """With probability ``epsilon`` a uniformly random valid action, else greedy
    (q_values [B, A] masked, action_mask bool [B, A]) -> int32 [B]."""
    k_explore, k_random = jax.random.split(key)
    explore = jax.random.uniform(k_explore, q_values.shape[:1]) < epsilon
    return jnp.where(explore, random_valid_action(k_random, action_mask), greedy(q_values))
