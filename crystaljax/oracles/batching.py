"""Evaluate an expensive in-graph oracle only when some env of the batch has finished.

Under ``vmap`` a ``lax.cond`` on a per-env flag becomes a ``select`` that computes both
branches for every env, so an oracle inside the step would run at every step of every
env. :func:`only_finished` gives the oracle a batching rule of its own
(``jax.custom_batching.custom_vmap``): the batched call computes the oracle for the
whole batch when at least one env finished at this step, and skips it otherwise. In fill
mode the envs of one template finish together (every ``num_sites`` steps), so the oracle
runs once per episode instead of once per step. Unfinished envs get ``fill``.

Under a second, outer ``vmap`` (e.g. over seeds) the outer batch sees the rule's
``cond`` with a batched predicate again and computes both branches: still correct, only
the saving is lost there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def _broadcast(x: Any, batched: bool, size: int) -> jnp.ndarray:
    return x if batched else jnp.broadcast_to(x, (size,) + jnp.shape(x))


def only_finished(fn: Callable[..., Any], fill: Callable[[], Any]) -> Callable[..., Any]:
    """``call(finished, *args)``: ``fn(*args)`` where ``finished`` (bool []) else ``fill()``.

    Unbatched it is a real ``lax.cond``; under ``vmap`` it computes ``vmap(fn)`` over the
    batch only when ``any(finished)``. ``fn`` and ``fill`` return pytrees of the same
    structure, shapes and dtypes.
    """

    @jax.custom_batching.custom_vmap
    def call(finished, *args):
        return jax.lax.cond(finished, lambda: fn(*args), fill)

    @call.def_vmap
    def rule(axis_size, in_batched, finished, *args):
        finished = _broadcast(finished, in_batched[0], axis_size)
        args = [jax.tree.map(lambda x, b: _broadcast(x, b, axis_size), a, flags)
                for a, flags in zip(args, in_batched[1:])]
        empty = lambda: jax.tree.map(  # noqa: E731
            lambda x: jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)), fill())
        out = jax.lax.cond(finished.any(), lambda: jax.vmap(fn)(*args), empty)
        return out, jax.tree.map(lambda _: True, out)

    return call


__all__ = ["only_finished"]
