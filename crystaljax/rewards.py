"""Reward parameters and the reward of a computed property (pure ``jnp``).

The reward forms, units and defaults live in the property registry
(:mod:`crystaljax.properties`); this module keeps the traced reward parameters and the
function the env step calls.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import struct

from crystaljax.properties import PROPERTIES, Property, get_property


@struct.dataclass
class RewardParams:
    """Reward parameters (traced leaves, so they can vary across vmapped envs)."""

    target: jnp.ndarray  # f32 [], in the property's unit
    beta: jnp.ndarray  # f32 [], width scale of the Gaussian rewards
    floor: jnp.ndarray  # f32 [], lowest non-failure reward
    penalty: jnp.ndarray  # f32 [], reward of a failed evaluation


def property_spec(name: str) -> Property:
    """The registry entry of property ``name`` (kept name: see crystaljax.properties)."""
    return get_property(name)


def check_target(name: str, target: float) -> float:
    """Validate a target value for ``name``; returns it as float."""
    return get_property(name).check_target(target)


def reward(property_name: str, value: jnp.ndarray, status: jnp.ndarray,
           params: RewardParams, xp: Any = jnp) -> jnp.ndarray:
    """Reward of a computed property (any shape; ``status`` 0 = OK). Returns f32."""
    return get_property(property_name).reward(value, status, params, xp)


__all__ = ["PROPERTIES", "RewardParams", "check_target", "property_spec", "reward"]
