"""Oracle interface: what computes a finished crystal's property.

Two kinds share one result convention, ``(value, status)``:

* in-graph oracles (:class:`InGraphOracle`) are pure ``jnp`` functions of the
  env's token array, evaluated inside the jitted step;
* host oracles (:class:`HostOracle`) run on the host (DFT, ML potentials) and
  are reached through one batched ``jax.pure_callback`` per env step
  (see :mod:`crystaljax.oracles.bridge`).

A status other than :data:`Status.OK` makes the reward the configured failure
penalty, except the statuses of :data:`FLOOR_STATUSES` (an answer about the crystal,
not a failure to compute it: ``NO_MINIMUM``, ``UNSTABLE``), which get the floor reward; the
reason travels in :class:`OracleResult` and is recorded, never raised.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from pymatgen.core import Structure


class Status(enum.IntEnum):
    """Outcome codes of one oracle evaluation (int32 inside JAX)."""

    OK = 0
    SCF_NOT_CONVERGED = 1
    CHARGE_WRONG = 2
    CRASH = 3  # the program died or exited non-zero
    TIMEOUT = 4
    PARSE_ERROR = 5  # missing or unparsable output
    INVALID_INPUT = 6  # the crystal cannot be computed (e.g. no pseudopotential)
    ORACLE_ERROR = 7  # an exception in crystaljax's own host code
    NO_MINIMUM = 8  # E(V) has no minimum in the searched range (QE relax: volume / full)
    UNSTABLE = 9  # formation energy above max_formation_energy (CHGNet oracle option)
    RELAX_NOT_CONVERGED = 10  # a minimum is bracketed but the bounded search did not reach it
    NOT_EVALUATED = -1  # the env was not terminal at this step


#: Statuses that are an outcome of the crystal, not a failure: no value, and the reward
#: is the floor (the lowest reward of a computed value), not the failure penalty.
#: NO_MINIMUM: no equilibrium volume in the searched range; UNSTABLE: a formation energy
#: above the oracle's ``max_formation_energy`` (a crystal that could not exist).
FLOOR_STATUSES: frozenset[Status] = frozenset({Status.NO_MINIMUM, Status.UNSTABLE})


@dataclasses.dataclass(frozen=True)
class OracleResult:
    """One host evaluation.

    Attributes:
      value: property value in the oracle's unit (nan when ``status != OK``, also for
        a :data:`FLOOR_STATUSES` status).
      status: a :class:`Status`.
      reason: human-readable failure reason ('' on success).
      seconds: wall time spent computing (0 for cache hits).
      extra: free-form details (energy per atom, output tail, scratch path, ...).
    """

    value: float
    status: Status = Status.OK
    reason: str = ""
    seconds: float = 0.0
    extra: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def failure(cls, status: Status, reason: str, **extra) -> "OracleResult":
        return cls(float("nan"), Status(status), reason, extra=dict(extra))


@runtime_checkable
class HostOracle(Protocol):
    """A property computed on the host for a batch of finished crystals.

    ``property_name`` is a name of the property registry (:mod:`crystaljax.properties`)
    and ``unit`` its unit. ``evaluate`` must not raise for a bad crystal: it returns a
    failed :class:`OracleResult` instead. It receives all finished crystals of one env
    step at once, so it may run them concurrently.

    Optional members, read with :func:`oracle_can_fail`, :func:`oracle_counters` and
    :func:`close_oracle`: ``can_fail`` (bool, default True: whether a result can be a
    failure), ``stats() -> dict`` (``computed`` and ``cache_hits`` counters) and
    ``close()`` (release pools, clients and caches).
    """

    property_name: str
    unit: str

    def evaluate(self, structures: Sequence[Structure]) -> list[OracleResult]: ...


def evaluate_guarded(evaluate: Callable[[list[Structure]], list[OracleResult]],
                     structures: Sequence[Structure], closed: bool, name: str
                     ) -> list[OracleResult]:
    """A host oracle's ``evaluate`` that never raises: ``evaluate(structures)``, or one
    ORACLE_ERROR result per crystal when the oracle is closed or its code raised (the last
    line of defence: training must go on)."""
    structures = list(structures)
    if closed:
        return [OracleResult.failure(Status.ORACLE_ERROR, f"the {name} is closed")
                for _ in structures]
    try:
        return evaluate(structures)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return [OracleResult.failure(Status.ORACLE_ERROR, reason) for _ in structures]


def oracle_can_fail(oracle: object) -> bool:
    """Whether ``oracle`` may return failures (its ``can_fail``; True when undeclared)."""
    return bool(getattr(oracle, "can_fail", True))


def oracle_counters(oracle: object) -> dict | None:
    """``oracle.stats()`` when the oracle keeps counters (computed, cache_hits), else None."""
    stats = getattr(oracle, "stats", None)
    return dict(stats()) if callable(stats) else None


def close_oracle(oracle: object) -> None:
    """Call ``oracle.close()`` when it has one."""
    close = getattr(oracle, "close", None)
    if callable(close):
        close()
