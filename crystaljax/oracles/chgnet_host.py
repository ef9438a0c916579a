"""Host CHGNet oracle (``oracle: chgnet-host``): the torch CHGNet behind the bridge.

The reference implementation of the in-graph oracle (:mod:`crystaljax.oracles.chgnet`),
and the CHGNet oracle for what the in-graph one cannot do (a full relaxation of atoms and
cell). It runs the ``chgnet`` package's own model (torch, CPU) on the host, in a process
pool of ``workers`` processes (the model is loaded once per worker), and implements
:class:`~crystaljax.oracles.base.HostOracle`.

Properties: ``density`` (g/cm³), ``bulk_modulus`` (GPa) and ``energy`` (eV/atom).
Options (:class:`CHGNetHostOptions`, key ``env.oracle_options``):

* ``relax: volume`` (default): the protocol of the in-graph oracle
  (:func:`crystaljax.mlip.relax.relax_volume`): the lattice is scaled isotropically
  (fractional coordinates fixed), E(s) on a grid of ``GRID_POINTS`` scales over
  ``[min_scale, max_scale]`` (lowest point at an end: ``NO_MINIMUM``), then ``steps``
  safeguarded Newton steps (rtsafe) on E'(s) = 0 inside the two grid intervals around the
  lowest point; ``NO_MINIMUM`` when E''(s) <= 0 at the end, ``RELAX_NOT_CONVERGED`` when
  the last Newton step exceeds ``SCALE_TOLERANCE``. E'(s) and E''(s) are exact, by
  torch autograd through a scalar factor of the graph's lattice; the graph is rebuilt at
  every scale (its neighbours change). B = (E'' - 2E'/s) / (9 V0 s).
* ``relax: none``: everything at the crystal's own cell (the bulk modulus is the local
  curvature there, and may be negative).
* ``relax: full``: atoms and cell relaxed first (ASE ``FrechetCellFilter`` or
  ``ExpCellFilter`` and FIRE or BFGS through chgnet's ``CHGNetCalculator``, at most
  ``relax_steps`` steps, ``fmax`` eV/Å), then the ``volume`` protocol from the relaxed cell
  (as the QE oracle's ``relax: full``).

Failures are results, never exceptions: a disordered crystal, an element CHGNet has no
embedding for, or an atom with no neighbour within 6 Å in the given cell is
``INVALID_INPUT``; an exception or a non-finite energy of the model is ``CRASH``; a crystal
over ``time_limit`` is ``TIMEOUT``; a fault of this module is ``ORACLE_ERROR``.

``extra`` of a result: ``energy_per_atom`` (eV/atom at the cell the value belongs to),
``scale`` (that cell's lattice-constant factor relative to the given crystal), ``volume``
(Å^3), with ``relax: volume`` / ``full`` ``gradient`` and ``curvature`` (E'(s), E''(s) in
eV), with ``full`` ``lattice`` (the final 3x3 lattice, Å), ``relax_converged`` and
``relax_steps``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import importlib.util
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pymatgen.core import Structure

from crystaljax.config import ConfigError
from crystaljax.oracles.base import OracleResult, Status, evaluate_guarded
from crystaljax.oracles.chgnet_jobs import CHGNetJob, evaluate_chunk, process_model, run_job, structure_key
from crystaljax.oracles.chgnet_torch import (
    PROPERTIES,
    WORKER_MARGIN,
    CHGNetHostOptions,
    TorchCHGNet,
    limit_blas_threads,
    unsupported_reason,
)
from crystaljax.oracles.executors import Executor, LocalPoolExecutor
from crystaljax.properties import get_property

_CACHEABLE = frozenset({Status.OK, Status.NO_MINIMUM, Status.INVALID_INPUT, Status.CRASH})


class CHGNetHostOracle:
    """The torch CHGNet as a host oracle for batches of finished crystals.

    Args:
      property_name: ``density``, ``bulk_modulus`` or ``energy``.
      options: :class:`CHGNetHostOptions` (or a mapping of them).
      executor: where jobs run (default: a local process pool of ``options.workers``;
        ``workers: 0``: in this process); an executor passed in is not shut down by
        :meth:`close`.

    Host-oracle interface: ``property_name``, ``unit``, ``can_fail``, ``evaluate``,
    ``stats()``, ``close()`` (idempotent), context manager.
    """

    can_fail = True

    def __init__(self, property_name: str,
                 options: CHGNetHostOptions | Mapping[str, Any] | None = None,
                 executor: Executor | None = None):
        if property_name not in PROPERTIES:
            raise ValueError(f"the CHGNet host oracle computes {list(PROPERTIES)}, not "
                             f"{property_name!r}")
        missing = [m for m in ("torch", "chgnet") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"oracle 'chgnet-host' needs {' and '.join(missing)}, which "
                              "is not installed: run `make setup` (torch CPU, then "
                              "pip install 'crystaljax[mlip]')")
        self.property_name = property_name
        self.unit = get_property(property_name).unit
        self.options = CHGNetHostOptions.coerce(options)
        self.owns_executor = executor is None
        self.executor: Executor | None = executor or (
            LocalPoolExecutor(self.options.workers) if self.options.workers > 0 else None)
        self._cache: collections.OrderedDict[str, OracleResult] = collections.OrderedDict()
        self._counts: collections.Counter[str] = collections.Counter()
        self._failures: collections.Counter[str] = collections.Counter()
        self._model_seconds = 0.0
        self._closed = False

    @classmethod
    def from_options(cls, property_name: str,
                     options: CHGNetHostOptions | Mapping[str, Any] | None = None,
                     executor: Executor | None = None) -> "CHGNetHostOracle":
        """The registry's builder (ConfigError on bad options, ValueError on a property
        it does not compute)."""
        return cls(property_name, CHGNetHostOptions.coerce(options), executor)

    # -- public ---------------------------------------------------------------------------

    def evaluate(self, structures: Sequence[Structure]) -> list[OracleResult]:
        """One result per crystal (value in :attr:`unit`); never raises."""
        return evaluate_guarded(self._evaluate, structures, self._closed, "CHGNet host oracle")

    def stats(self) -> dict:
        """Counters: ``evaluated`` (crystals asked for), ``computed`` (results that came
        from the model, failures included), ``cache_hits``, ``batch_duplicates``,
        ``invalid_input``, ``executor_errors``, ``model_seconds`` (compute time of the
        computed crystals) and ``failures`` (status name -> count)."""
        out: dict[str, Any] = {key: self._counts[key] for key in (
            "evaluated", "computed", "cache_hits", "batch_duplicates", "invalid_input",
            "executor_errors")}
        out["model_seconds"] = self._model_seconds
        out["failures"] = dict(self._failures)
        return out

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Shut down the pool this oracle owns and drop the cache (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._cache.clear()
        if self.owns_executor and self.executor is not None:
            self.executor.shutdown()

    def __enter__(self) -> "CHGNetHostOracle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _evaluate(self, structures: list[Structure]) -> list[OracleResult]:
        self._counts["evaluated"] += len(structures)
        results: list[OracleResult | None] = [None] * len(structures)
        groups: dict[str, list[int]] = {}
        for i, structure in enumerate(structures):
            key = structure_key(structure)
            if key in groups:
                self._counts["batch_duplicates"] += 1
                groups[key].append(i)
            elif key in self._cache:
                self._counts["cache_hits"] += 1
                self._cache.move_to_end(key)
                results[i] = dataclasses.replace(self._cache[key], seconds=0.0)
            else:
                groups[key] = [i]
        keys = list(groups)
        computed = self._compute([structures[groups[k][0]] for k in keys])
        for key, result in zip(keys, computed, strict=True):
            self._record(key, result)
            for i in groups[key]:
                results[i] = result
        return [r if r is not None else OracleResult.failure(Status.ORACLE_ERROR, "no result")
                for r in results]

    def _compute(self, structures: list[Structure]) -> list[OracleResult]:
        if not structures:
            return []
        if self.executor is None:
            model = process_model(self.options.version, self.options.threads)
            return evaluate_chunk(model, self.property_name, structures, self.options)
        workers = max(1, self.executor.max_workers)
        size = max(1, min(self.options.batch_size, math.ceil(len(structures) / workers)))
        chunks = [structures[i:i + size] for i in range(0, len(structures), size)]
        futures = []
        for chunk in chunks:
            job = CHGNetJob(self.property_name, tuple(s.as_dict() for s in chunk), self.options)
            try:
                futures.append(self.executor.submit(run_job, job))
            except Exception as exc:
                futures.append(exc)
        deadline = None
        if self.options.time_limit:
            waves = math.ceil(len(chunks) / workers)
            # a batch may run once together and once crystal by crystal
            deadline = time.monotonic() + waves * (2 * size * self.options.time_limit
                                                   + WORKER_MARGIN)
        out: list[OracleResult] = []
        overran = False
        for chunk, future in zip(chunks, futures, strict=True):
            got = self._wait(future, deadline, len(chunk))
            overran |= any(r.extra.get("executor_deadline") for r in got)
            out.extend(got)
        if overran and isinstance(self.executor, LocalPoolExecutor):
            self.executor.reset()
        return out

    def _wait(self, future: Any, deadline: float | None, n: int) -> list[OracleResult]:
        if isinstance(future, Exception):
            self._counts["executor_errors"] += n
            reason = f"executor error: {type(future).__name__}: {future}"
            return [OracleResult.failure(Status.ORACLE_ERROR, reason) for _ in range(n)]
        try:
            timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
            got = future.result(timeout=timeout)
        except (concurrent.futures.TimeoutError, TimeoutError):
            cancel = getattr(future, "cancel", None)
            if cancel is not None:
                cancel()
            self._counts["executor_errors"] += n
            return [OracleResult.failure(Status.TIMEOUT, "job exceeded its deadline in the "
                                         "executor", executor_deadline=True) for _ in range(n)]
        except Exception as exc:  # a worker died, ...
            self._counts["executor_errors"] += n
            reason = f"executor error: {type(exc).__name__}: {exc}"
            return [OracleResult.failure(Status.ORACLE_ERROR, reason) for _ in range(n)]
        if not isinstance(got, list) or len(got) != n:
            self._counts["executor_errors"] += n
            return [OracleResult.failure(Status.ORACLE_ERROR, "the job returned no results")
                    for _ in range(n)]
        return got

    def _record(self, key: str, result: OracleResult) -> None:
        if not result.extra.get("executor_deadline") and not result.reason.startswith(
                "executor error"):
            self._counts["computed"] += 1
            self._model_seconds += float(result.seconds)
        if result.status == Status.INVALID_INPUT:
            self._counts["invalid_input"] += 1
        if result.status != Status.OK:
            self._failures[Status(result.status).name] += 1
        if self.options.cache_size and result.status in _CACHEABLE:
            self._cache[key] = result
            while len(self._cache) > self.options.cache_size:
                self._cache.popitem(last=False)


def build_host(property_name: str, options: CHGNetHostOptions | None) -> CHGNetHostOracle:
    """The registry's builder of ``oracle: chgnet-host``."""
    return CHGNetHostOracle.from_options(property_name, options)


__all__ = ["CHGNetHostOptions", "CHGNetHostOracle", "CHGNetJob", "PROPERTIES", "TorchCHGNet",
           "build_host", "evaluate_chunk", "limit_blas_threads", "process_model", "run_job",
           "structure_key", "unsupported_reason"]
