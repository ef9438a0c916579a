"""Properties, their units and the reward functions (pure ``jnp``, CrystalGym's forms).

With p the computed property and p̂ the target:

* density (g/cm³):      r = exp(-(p̂ - p)² / (beta · p̂))          failure: -1
* band_gap (eV):        r = exp(-(p̂ - max(p, 0))² / beta)         failure: -1
* bulk_modulus (GPa):   r = max(-|p̂ - p| / p̂, floor)              failure: -5

``beta = 1`` and ``floor = -5`` give the original's rewards. Any status other than
OK (or a non-finite value) gives the failure ``penalty``.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import struct


@dataclasses.dataclass(frozen=True)
class PropertySpec:
    """Defaults of one target property."""

    unit: str
    default_target: float
    default_penalty: float
    target_scale: float  # divides the target in the observation's globals
    allow_zero_target: bool


PROPERTIES: dict[str, PropertySpec] = {
    "density": PropertySpec("g/cm3", 3.0, -1.0, 10.0, False),
    "band_gap": PropertySpec("eV", 1.12, -1.0, 10.0, True),
    "bulk_modulus": PropertySpec("GPa", 300.0, -5.0, 500.0, False),
}


def property_spec(name: str) -> PropertySpec:
    if name not in PROPERTIES:
        raise ValueError(f"unknown property {name!r}; choose one of {sorted(PROPERTIES)}")
    return PROPERTIES[name]


def check_target(name: str, target: float) -> float:
    """Validate a target value's sign for ``name``; returns it as float."""
    spec = property_spec(name)
    target = float(target)
    if not jnp.isfinite(target):
        raise ValueError(f"target for {name} must be finite, got {target}")
    if target < 0 or (target == 0 and not spec.allow_zero_target):
        bound = ">= 0" if spec.allow_zero_target else "> 0"
        raise ValueError(f"target for {name} must be {bound} {spec.unit}, got {target}")
    return target


@struct.dataclass
class RewardParams:
    """Reward parameters (traced leaves, so they can vary across vmapped envs)."""

    target: jnp.ndarray  # f32 [], in the property's unit
    beta: jnp.ndarray  # f32 [], width scale of the Gaussian rewards
    floor: jnp.ndarray  # f32 [], lowest non-failure reward
    penalty: jnp.ndarray  # f32 [], reward of a failed evaluation


def reward(property_name: str, value: jnp.ndarray, status: jnp.ndarray,
           params: RewardParams) -> jnp.ndarray:
    """Reward of a computed property (any shape; ``status`` 0 = OK). Returns f32."""
    p_hat = params.target
    if property_name == "density":
        r = jnp.exp(-((p_hat - value) ** 2) / (params.beta * p_hat))
    elif property_name == "band_gap":
        r = jnp.exp(-((p_hat - jnp.maximum(value, 0.0)) ** 2) / params.beta)
    elif property_name == "bulk_modulus":
        r = -jnp.abs(p_hat - value) / p_hat
    else:
        raise ValueError(f"unknown property {property_name!r}")
    r = jnp.maximum(r, params.floor)
    ok = (status == 0) & jnp.isfinite(value)
    return jnp.where(ok, r, params.penalty).astype(jnp.float32)
