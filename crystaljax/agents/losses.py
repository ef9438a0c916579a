"""TD losses of the value-based agents, on rlax's per-sample TD errors and C51 losses.

B = batch, A = actions, K = atoms. Invalid actions must already carry MASKED_LOGIT in the
``q_t_selector`` values, so the bootstrap action is always a valid one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import rlax


def scalar_td_errors(q_tm1: jax.Array, a_tm1: jax.Array, r_t: jax.Array, discount_t: jax.Array,
                     q_t_value: jax.Array, q_t_selector: jax.Array) -> jax.Array:
    """Double-Q TD errors [B]: the bootstrap action is argmax of ``q_t_selector`` [B, A]
    (the online net for double Q; the target net itself for plain Q-learning), valued by
    ``q_t_value`` [B, A] (the target net). q_tm1 [B, A], a_tm1 int [B], r_t, discount_t [B]."""
    return jax.vmap(rlax.double_q_learning)(q_tm1, a_tm1, r_t, discount_t, q_t_value, q_t_selector)


def scalar_loss(td_errors: jax.Array, kind: str) -> jax.Array:
    """Per-sample loss [B] of TD errors: 'mse' (td^2, CleanRL's DQN) or 'huber' (delta 1)."""
    if kind == "mse":
        return jnp.square(td_errors)
    if kind == "huber":
        return rlax.huber_loss(td_errors, 1.0)
    raise ValueError(f"unknown loss {kind!r}; choose 'mse' or 'huber'")


def categorical_losses(atoms: jax.Array, logits_tm1: jax.Array, a_tm1: jax.Array,
                       r_t: jax.Array, discount_t: jax.Array, logits_t: jax.Array,
                       q_t_selector: jax.Array) -> jax.Array:
    """C51 cross-entropy [B] between the online distribution of the taken action and the
    projected target distribution of the action ``argmax q_t_selector``.

    atoms [K]; logits_tm1, logits_t [B, A, K]; q_t_selector [B, A]."""
    loss = jax.vmap(rlax.categorical_double_q_learning,
                    in_axes=(None, 0, 0, 0, 0, None, 0, 0))
    return loss(atoms, logits_tm1, a_tm1, r_t, discount_t, atoms, logits_t, q_t_selector)
