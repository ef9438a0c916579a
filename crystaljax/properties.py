"""The property registry: one entry per target property.

An entry holds everything the rest of crystaljax needs to know about a property: its
unit, task-id spelling, default target and failure penalty, the reward function, the
scale of the target in the observation, the reward bounds and which oracles compute it.
Adding a property is one :func:`register` call here plus its oracle code.

With p the computed property and p̂ the target (CrystalGym's forms, ``beta = 1`` and
``floor = -5`` give the original's rewards):

* density (g/cm³):      r = exp(-(p̂ - p)² / (beta · p̂))          failure: -1
* band_gap (eV):        r = exp(-(p̂ - max(p, 0))² / beta)         failure: -1
* bulk_modulus (GPa):   r = max(-|p̂ - p| / p̂, floor)              failure: -5
* energy (eV/atom):     r = exp(-(p̂ - p)² / beta)                  failure: -1
* formation_energy (eV/atom): r = exp(-(p̂ - p)² / beta)            failure: -1

Every reward is clipped below at ``floor``; a status other than OK or a non-finite value
gives the failure ``penalty``, except a status of
:data:`crystaljax.oracles.base.FLOOR_STATUSES` (``NO_MINIMUM``: the crystal has no
equilibrium volume in the searched range; ``UNSTABLE``: its formation energy is above the
oracle's ``max_formation_energy``), which gives the lowest reward of a computed
value, ``max(floor, the shape's minimum)``. Reward functions take the array module
``xp`` (``jnp`` inside the jitted step, ``numpy`` on the host), so both sides compute the
same number.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from crystaljax.config import add_entry
from crystaljax.oracles.base import FLOOR_STATUSES

#: reward of a computed value before the floor: (value, target, beta, xp) -> reward
RewardShape = Callable[[Any, Any, Any, Any], Any]


@dataclasses.dataclass(frozen=True)
class Property:
    """One target property.

    Attributes:
      name: config spelling (``bulk_modulus``); task ids use ``task_name`` (``bulk-modulus``).
      unit: unit of values and targets.
      default_target: CrystalGym's target in ``unit``.
      default_penalty: reward of a failed evaluation.
      target_scale: divides the target in the observation's globals (keeps it ~O(1)).
      allow_zero_target: whether a target of 0 is meaningful (a zero band gap is).
      shape: the reward before the floor, see :data:`RewardShape`.
      max_reward: the highest reward (reached at p = p̂).
      oracles: names of the oracles that compute it ('analytic' = in-graph).
      description: one line for listings.
      allow_negative_target: whether targets below 0 are meaningful (energies are).
    """

    name: str
    unit: str
    default_target: float
    default_penalty: float
    target_scale: float
    allow_zero_target: bool
    shape: RewardShape
    max_reward: float
    oracles: tuple[str, ...]
    description: str = ""
    allow_negative_target: bool = False

    @property
    def task_name(self) -> str:
        return self.name.replace("_", "-")

    def check_target(self, target: Any) -> float:
        """``target`` as a float; ValueError unless finite and of the allowed sign."""
        try:
            value = float(target)
        except (TypeError, ValueError):
            raise ValueError(f"target for {self.name} must be a number, got {target!r}") from None
        if isinstance(target, bool) or not math.isfinite(value):
            raise ValueError(f"target for {self.name} must be a finite number, got {target!r}")
        if self.allow_negative_target:
            return value
        if value < 0 or (value == 0 and not self.allow_zero_target):
            bound = ">= 0" if self.allow_zero_target else "> 0"
            raise ValueError(f"target for {self.name} must be {bound} {self.unit}, got {value:g}")
        return value

    @property
    def shape_minimum(self) -> float:
        """Infimum of the reward shape (0 for the Gaussians, which lie in (0, 1])."""
        return 0.0 if self.max_reward == 1.0 else -math.inf

    def reward(self, value: Any, status: Any, params: Any, xp: Any = jnp) -> Any:
        """Reward of computed values (any shape; ``status`` 0 = OK) as float32.
        ``params`` has target, beta, floor, penalty (a RewardParams). A status of
        :data:`~crystaljax.oracles.base.FLOOR_STATUSES` gets max(floor, shape minimum)."""
        r = xp.maximum(self.shape(value, params.target, params.beta, xp), params.floor)
        ok = (status == 0) & xp.isfinite(value)
        floor_status = xp.zeros_like(ok)
        for code in sorted(FLOOR_STATUSES):
            floor_status = floor_status | (status == int(code))
        lowest = xp.maximum(params.floor, self.shape_minimum)
        return xp.where(ok, r, xp.where(floor_status, lowest, params.penalty)).astype(xp.float32)

    def reward_bounds(self, params: Any, can_fail: bool = True) -> tuple[float, float]:
        """(lowest, highest) reward an episode can end with: the floor or the shape's own
        minimum (also the reward of a :data:`~crystaljax.oracles.base.FLOOR_STATUSES`
        status), the penalty only when the oracle can fail."""
        low = max(self.shape_minimum, float(params.floor))
        if can_fail:
            low = min(low, float(params.penalty))
        return low, float(self.max_reward)


def _gaussian_density(value, target, beta, xp):
    return xp.exp(-((target - value) ** 2) / (beta * target))


def _gaussian_gap(value, target, beta, xp):
    return xp.exp(-((target - xp.maximum(value, 0.0)) ** 2) / beta)


def _gaussian_energy(value, target, beta, xp):
    return xp.exp(-((target - value) ** 2) / beta)


def _relative_error(value, target, beta, xp):
    return -xp.abs(target - value) / target


PROPERTIES: dict[str, Property] = {}


def register(prop: Property) -> Property:
    """Add a property to the registry (its name must be new)."""
    return add_entry(PROPERTIES, prop, "property")


register(Property("density", "g/cm3", 3.0, -1.0, 10.0, False, _gaussian_density, 1.0,
                  ("analytic", "qe", "chgnet", "chgnet-host"),
                  "mass / volume (analytic: fixed lattice; QE and CHGNet: as relaxed)"))
register(Property("band_gap", "eV", 1.12, -1.0, 10.0, True, _gaussian_gap, 1.0, ("qe",),
                  "Kohn-Sham band gap (PBE)"))
register(Property("bulk_modulus", "GPa", 300.0, -5.0, 500.0, False, _relative_error, 0.0,
                  ("qe", "chgnet", "chgnet-host"),
                  "B = V d2E/dV2 (QE: Birch-Murnaghan fit; CHGNet: autodiff)"))
register(Property("energy", "eV/atom", -5.0, -1.0, 10.0, True, _gaussian_energy, 1.0,
                  ("chgnet", "chgnet-host"), "total energy per atom (CHGNet, MP-compatible scale)",
                  allow_negative_target=True))
register(Property("formation_energy", "eV/atom", -1.0, -1.0, 1.0, True, _gaussian_energy, 1.0,
                  ("chgnet",), "energy per atom minus the elemental references, each relaxed "
                  "once by the same model (CHGNet)", allow_negative_target=True))


def get_property(name: str) -> Property:
    """The registry entry of ``name`` (ValueError listing the known ones otherwise)."""
    if not isinstance(name, str) or name not in PROPERTIES:
        raise ValueError(f"unknown property {name!r}; choose one of {sorted(PROPERTIES)}")
    return PROPERTIES[name]


def list_properties() -> list[str]:
    return sorted(PROPERTIES)


__all__ = ["PROPERTIES", "Property", "get_property", "list_properties", "register"]
