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
                       q_t_selector: jax.Array) -> tuple[jax.Array, jax.Array]:
    """C51 double-Q losses of the taken action against the projected target distribution
    of the action ``argmax q_t_selector`` (rlax's projection; targets carry no gradient).

    atoms [K]; logits_tm1, logits_t [B, A, K]; q_t_selector [B, A]; r_t, discount_t [B].
    Returns (cross-entropy [B], KL divergence [B]): the two have the same gradient, the
    KL is 0 once the prediction matches the target. Priorities must use the KL (as
    Rainbow does): the cross-entropy adds the target's own entropy, which is large for a
    target between two atoms however well it is already predicted.
    """

    def one(logits_tm1, a_tm1, r_t, discount_t, logits_t, q_t_selector):
        p_t = jax.nn.softmax(logits_t[jnp.argmax(q_t_selector)])
        target = rlax.categorical_l2_project(r_t + discount_t * atoms, p_t, atoms)
        target = jax.lax.stop_gradient(target)
        cross_entropy = -jnp.sum(target * jax.nn.log_softmax(logits_tm1[a_tm1]))
        entropy = -jnp.sum(jax.scipy.special.xlogy(target, target))
        return cross_entropy, jnp.maximum(cross_entropy - entropy, 0.0)

    return jax.vmap(one)(logits_tm1, a_tm1, r_t, discount_t, logits_t, q_t_selector)
