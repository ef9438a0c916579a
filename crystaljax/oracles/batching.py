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

How the batch is computed when it runs (``batching``):

* ``vmap``: ``vmap(fn)`` over every batch axis (accelerators: one wide kernel per op);
  with ``chunk`` > 0 a batch larger than ``chunk`` is cut into vmapped chunks of at most
  ``chunk`` crystals run one after another (``lax.map`` with ``batch_size``), which bounds
  the memory (an oracle's intermediates grow with the batch);
* ``map``: the batch axes are flattened and ``fn`` runs crystal by crystal in a
  ``lax.map`` (a loop in the compiled program). On CPU this is faster for graph networks
  (the gathers and scatter-adds of a vmapped graph network are batched scatters, which
  XLA's CPU backend runs slowly), and inside ``fn`` a ``lax.cond``/``lax.switch`` stays a
  real branch, so an oracle can pick a smaller graph per crystal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

BATCHING = ("vmap", "map")


def _broadcast(x: Any, batched: bool, size: int) -> jnp.ndarray:
    return x if batched else jnp.broadcast_to(x, (size,) + jnp.shape(x))


def over_batch(fn: Callable[..., Any], batch_shape: tuple[int, ...], batching: str,
               chunk: int = 0) -> Callable[..., Any]:
    """``fn`` applied over the leading ``batch_shape`` axes of every argument leaf
    (``chunk``: see the module docstring; 0 = no limit)."""
    if not batch_shape:
        return fn
    n, depth = math.prod(batch_shape), len(batch_shape)
    if batching == "vmap" and (chunk <= 0 or n <= chunk):
        for _ in batch_shape:
            fn = jax.vmap(fn)
        return fn
    batch_size = chunk if batching == "vmap" else None

    def mapped(*args):
        flat = jax.tree.map(lambda x: jnp.reshape(x, (n,) + jnp.shape(x)[depth:]), args)
        out = jax.lax.map(lambda xs: fn(*xs), flat, batch_size=batch_size)
        return jax.tree.map(lambda x: jnp.reshape(x, batch_shape + jnp.shape(x)[1:]), out)

    return mapped


def only_finished(fn: Callable[..., Any], fill: Callable[[], Any], batching: str = "vmap",
                  chunk: int = 0) -> Callable[..., Any]:
    """``call(finished, *args)``: ``fn(*args)`` if ``finished`` (bool) else ``fill()``.

    Unbatched it is a real ``lax.cond``. Under ``vmap`` its batching rule returns the same
    construction one batch axis deeper, so every level of nested vmaps (envs, seeds, ...)
    ends in one ``lax.cond`` on ``any(finished)`` over the whole batch, which computes
    ``fn`` over the batch as ``batching`` says (``vmap`` or ``map``, with ``vmap`` in
    chunks of at most ``chunk`` crystals when it is > 0; see the module docstring).
    ``fn`` and ``fill`` return pytrees of the same structure, shapes and dtypes.
    """
    if batching not in BATCHING:
        raise ValueError(f"batching must be one of {BATCHING}, got {batching!r}")
    if not isinstance(chunk, int) or chunk < 0:
        raise ValueError(f"chunk must be an int >= 0 (0: no limit), got {chunk!r}")
    return _only_finished(fn, fill, batching, chunk, ())


def _only_finished(fn, fill, batching: str, chunk: int, batch_shape: tuple[int, ...]):
    def batched_fill():
        return jax.tree.map(lambda x: jnp.broadcast_to(x, batch_shape + jnp.shape(x)), fill())

    @jax.custom_batching.custom_vmap
    def call(finished, *args):
        return jax.lax.cond(jnp.any(finished), lambda: over_batch(fn, batch_shape, batching, chunk)(
            *args), batched_fill)

    @call.def_vmap
    def rule(axis_size, in_batched, finished, *args):
        finished = _broadcast(finished, in_batched[0], axis_size)
        args = [jax.tree.map(lambda x, b: _broadcast(x, b, axis_size), a, flags)
                for a, flags in zip(args, in_batched[1:])]
        out = _only_finished(fn, fill, batching, chunk, (axis_size,) + batch_shape)(finished, *args)
        return out, jax.tree.map(lambda _: True, out)

    return call


__all__ = ["BATCHING", "only_finished", "over_batch"]
