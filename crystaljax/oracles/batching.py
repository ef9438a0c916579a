"""Evaluate an expensive in-graph oracle only when some env of the batch has finished.

Under ``vmap`` a ``lax.cond`` on a per-env flag becomes a ``select`` that computes both
branches for every env, so an oracle inside the step would run at every step of every
env. :func:`only_finished` gives the oracle a batching rule of its own
(``jax.custom_batching.custom_vmap``): the batched call computes the oracle for the
whole batch when at least one env finished at this step, and skips it otherwise. In fill
mode the envs of one template finish together (every ``num_sites`` steps), so the oracle
runs once per episode instead of once per step. When it runs, it runs for every env of
the batch (the caller masks the unfinished ones, as the env step does); when it is
skipped, every env gets ``fill``.

The rule is recursive, so nested vmaps (envs inside seeds) keep the saving: the
condition is "any env of any seed finished".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def _broadcast(x: Any, batched: bool, size: int) -> jnp.ndarray:
    return x if batched else jnp.broadcast_to(x, (size,) + jnp.shape(x))


def only_finished(fn: Callable[..., Any], fill: Callable[[], Any]) -> Callable[..., Any]:
    """``call(finished, *args)``: ``fn(*args)`` if ``finished`` (bool) else ``fill()``.

    Unbatched it is a real ``lax.cond``. Under ``vmap`` its batching rule returns the same
    construction for ``vmap(fn)`` with the batched ``finished``, so every level of nested
    vmaps (envs, seeds, ...) ends in one ``lax.cond`` on ``any(finished)`` over the whole
    batch. ``fn`` and ``fill`` return pytrees of the same structure, shapes and dtypes.
    """

    @jax.custom_batching.custom_vmap
    def call(finished, *args):
        return jax.lax.cond(jnp.any(finished), lambda: fn(*args), fill)

    @call.def_vmap
    def rule(axis_size, in_batched, finished, *args):
        finished = _broadcast(finished, in_batched[0], axis_size)
        args = [jax.tree.map(lambda x, b: _broadcast(x, b, axis_size), a, flags)
                for a, flags in zip(args, in_batched[1:])]
        batched_fill = lambda: jax.tree.map(  # noqa: E731
            lambda x: jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)), fill())
        out = only_finished(jax.vmap(fn), batched_fill)(finished, *args)
        return out, jax.tree.map(lambda _: True, out)

    return call


__all__ = ["only_finished"]
