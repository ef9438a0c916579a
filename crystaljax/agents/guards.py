"""Non-finite update guard shared by every agent.

One batch with a NaN or inf (a failed DFT reward that slipped through, an overflow in a
log-probability) must not write NaN into every parameter for the rest of the run: an
update whose losses or gradients are not all finite is skipped instead, and counted in
the ``skipped_updates`` metric.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def all_finite(*trees: Any) -> jax.Array:
    """bool []: every leaf of every tree (losses, gradients, priorities) is finite."""
    leaves = [leaf for tree in trees for leaf in jax.tree.leaves(tree)]
    return jnp.stack([jnp.isfinite(leaf).all() for leaf in leaves]).all()


def new_if_ok(ok: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``ok`` (bool []) is true, else ``old``, leaf by leaf (same structure)."""
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
