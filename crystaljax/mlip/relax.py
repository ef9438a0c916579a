"""Isotropic volume relaxation and bulk modulus of an energy function E(s), in ``jnp``.

``E(s)`` is the energy (eV) of the crystal whose lattice is scaled by ``s`` (fractional
coordinates fixed), so the volume is ``V(s) = V0 s^3``. The minimum is found by a
safeguarded Newton search (Numerical Recipes' rtsafe) on E'(s) = 0 inside the bracket
``[s_min, s_max]``, with E' and E'' from forward-mode autodiff and a fixed number of steps, so it jits
and vmaps. The bulk modulus is ``B = V d2E/dV2``:

    dE/dV = E' / (3 V0 s^2),   B = (E'' - 2 E'/s) / (9 V0 s)   (eV/Å^3; x 160.2 for GPa)

A crystal whose E(s) does not fall and then rise inside the bracket (E'(s_min) >= 0 or
E'(s_max) <= 0), or whose curvature at the point found is not positive, has no minimum in
the searched range: ``has_minimum`` is False and no number is made up for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from crystaljax.mlip.chgnet import EV_PER_A3_TO_GPA


class VolumeResult(NamedTuple):
    """Outcome of :func:`relax_volume` (all f32 [] / bool [])."""

    scale: jnp.ndarray  # s at the minimum (lattice-constant scale)
    energy: jnp.ndarray  # eV per cell at s
    gradient: jnp.ndarray  # E'(s), eV
    curvature: jnp.ndarray  # E''(s), eV
    has_minimum: jnp.ndarray  # bool


def derivatives(energy_of_scale: Callable[[jnp.ndarray], jnp.ndarray], s: jnp.ndarray
                ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(E'(s), E''(s)) by forward-over-forward autodiff (one scalar input: forward mode
    avoids the scatter-adds of reverse mode; 1.5x faster than forward-over-reverse on CPU)."""
    return _taylor(energy_of_scale, s)[1:]


def _taylor(energy_of_scale, s):
    """(E(s), E'(s), E''(s))."""
    ones = jnp.ones_like(s)
    first = lambda x: jax.jvp(energy_of_scale, (x,), (ones,))  # noqa: E731
    (e, g), (_, h) = jax.jvp(first, (s,), (ones,))
    return e, g, h


def bulk_modulus(gradient: jnp.ndarray, curvature: jnp.ndarray, scale: jnp.ndarray,
                 volume0: jnp.ndarray) -> jnp.ndarray:
    """B = V d2E/dV2 in GPa from E'(s), E''(s) (eV), the scale s and V0 (Å^3)."""
    return (curvature - 2.0 * gradient / scale) / (9.0 * volume0 * scale) * EV_PER_A3_TO_GPA


def relax_volume(energy_of_scale: Callable[[jnp.ndarray], jnp.ndarray], s_min: float,
                 s_max: float, steps: int = 10) -> VolumeResult:
    """Minimise E(s) over s in [s_min, s_max] (safeguarded Newton, ``steps`` iterations).

    Starts at s = 1 (the template), clipped into the bracket. Each step takes the Newton
    step when E'' > 0 and it lands inside the current bracket, else bisects; the bracket
    shrinks around the sign change of E'.
    """
    slope = lambda x: jax.jvp(energy_of_scale, (x,), (jnp.ones_like(x),))[1]  # noqa: E731
    lo, hi = jnp.float32(s_min), jnp.float32(s_max)
    g_lo, g_hi = jax.vmap(slope)(jnp.stack([lo, hi]))
    bracketed = (g_lo < 0) & (g_hi > 0)

    def body(_, carry):
        x, lo, hi = carry
        g, h = derivatives(energy_of_scale, x)
        lo = jnp.where(g < 0, x, lo)
        hi = jnp.where(g < 0, hi, x)
        newton = x - g / jnp.where(h > 0, h, 1.0)
        inside = (h > 0) & (newton >= lo) & (newton <= hi)
        return jnp.where(inside, newton, 0.5 * (lo + hi)), lo, hi

    x0 = jnp.clip(jnp.float32(1.0), lo, hi)
    x, _, _ = jax.lax.fori_loop(0, steps, body, (x0, lo, hi))
    e, g, h = _taylor(energy_of_scale, x)
    ok = bracketed & (h > 0) & jnp.isfinite(e) & jnp.isfinite(h)
    return VolumeResult(scale=x, energy=e, gradient=g, curvature=h, has_minimum=ok)


__all__ = ["VolumeResult", "bulk_modulus", "derivatives", "relax_volume"]
