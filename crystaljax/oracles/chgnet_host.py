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
import contextlib
import dataclasses
import hashlib
import io
import math
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from crystaljax.config import check, from_mapping, option
from crystaljax.mlip.relax import GRID_POINTS, SCALE_TOLERANCE
from crystaljax.mlip.weights import CHECKPOINTS
from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.executors import Executor, LocalPoolExecutor
from crystaljax.properties import get_property

#: properties the host CHGNet oracle computes
PROPERTIES = ("density", "bulk_modulus", "energy")
#: eV/Å^3 -> GPa (as :data:`crystaljax.mlip.chgnet.EV_PER_A3_TO_GPA`)
EV_PER_A3_TO_GPA = 160.21766208
#: amu/Å^3 -> g/cm^3 (as :data:`crystaljax.oracles.analytic.AMU_PER_A3_TO_G_PER_CM3`)
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660
#: seconds a pool worker may take beyond the crystals' time limits (start, model load)
WORKER_MARGIN = 120.0


@dataclasses.dataclass(frozen=True)
class CHGNetHostOptions:
    """Options of ``oracle: chgnet-host`` (``env.oracle_options``).

    Attributes:
      relax: ``volume`` (default), ``none`` or ``full`` (see the module docstring).
      min_scale, max_scale: the searched range of the lattice-constant scale factor.
      steps: Newton/bisection steps of the volume search (at most; a crystal stops early
        once a step moves s by less than 1e-7).
      version: CHGNet checkpoint of the ``chgnet`` package (the in-graph port's).
      fmax: ``full``: force (and cell-filter stress) convergence, eV/Å.
      relax_steps: ``full``: optimizer steps at most.
      optimizer: ``full``: ASE optimizer, ``FIRE`` or ``BFGS``.
      cell_filter: ``full``: ASE cell filter, ``FrechetCellFilter`` or ``ExpCellFilter``.
      workers: processes of the pool (the model is loaded once in each); 0 evaluates in
        the calling process (no pool; the time limit then only applies on the main thread).
      threads: torch intra-op threads of each pool worker (with ``workers: 0``: of this
        process, set when the model is loaded). More threads than free cores make torch's
        small ops far slower (spinning threads), hence 1.
      batch_size: crystals per model call (and per job sent to a worker).
      time_limit: wall-clock seconds per crystal (None: no limit), enforced with SIGALRM
        inside the worker; a batch over its limit is rerun crystal by crystal so that only
        the slow crystal gets ``TIMEOUT``.
      cache_size: results kept in memory, keyed by the exact crystal (0: no cache).
    """

    relax: str = option("volume", choices=("none", "volume", "full"))
    min_scale: float = option(0.8, gt=0.5, le=1.0)
    max_scale: float = option(1.3, ge=1.0, le=2.0)
    steps: int = option(8, ge=1, le=100)
    version: str = option("0.3.0", choices=tuple(CHECKPOINTS))
    fmax: float = option(0.05, gt=0.0)
    relax_steps: int = option(500, ge=1, le=100_000)
    optimizer: str = option("FIRE", choices=("FIRE", "BFGS"))
    cell_filter: str = option("FrechetCellFilter", choices=("FrechetCellFilter", "ExpCellFilter"))
    workers: int = option(1, ge=0, le=1024)
    threads: int = option(1, ge=1, le=1024)
    batch_size: int = option(16, ge=1, le=4096)
    time_limit: float | None = option(None, gt=0)
    cache_size: int = option(100_000, ge=0)

    def __post_init__(self):
        check(self)

    @classmethod
    def coerce(cls, options: "CHGNetHostOptions | Mapping[str, Any] | None",
               where: str = "oracle_options") -> "CHGNetHostOptions":
        """``options`` as CHGNetHostOptions (a mapping or ``None`` is checked and converted)."""
        return options if isinstance(options, cls) else from_mapping(cls, options or {}, where)


# -- the model, once per process ------------------------------------------------------------


class _Timeout(BaseException):
    """Raised by the SIGALRM handler (a BaseException: library code's ``except Exception``
    must not swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise :class:`_Timeout` after ``seconds`` (only on the main thread; else no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


class TorchCHGNet:
    """The torch CHGNet of one process, with what the oracle asks of it.

    ``graph_converter`` of the model keeps CHGNet's check for isolated atoms (used on the
    given crystal); the scaled cells of the volume search use a second converter that
    accepts them (an atom may lose its last neighbour at ``max_scale``; the in-graph port
    computes such a cell too).
    """

    def __init__(self, version: str = "0.3.0"):
        import torch
        from chgnet.graph import CrystalGraphConverter
        from chgnet.model import CHGNet

        self.torch = torch
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = CHGNet.load(model_name=version, use_device="cpu", verbose=False)
        self.model.eval()
        self.version = version
        self.strict = self.model.graph_converter
        self.strict.set_isolated_atom_response("error")
        self.lenient = CrystalGraphConverter.from_dict(self.strict.as_dict())
        self.lenient.set_isolated_atom_response("ignore")
        self.max_z = int(self.model.atom_embedding.embedding.weight.shape[0])
        self._calculator = None

    # -- checks --------------------------------------------------------------------------

    def check(self, structure: Structure) -> OracleResult | None:
        """An ``INVALID_INPUT`` result when CHGNet cannot compute ``structure``, else None."""
        reason = unsupported_reason(structure, self.max_z)
        if reason is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.strict(structure)
            except Exception as exc:  # isolated atoms, a graph CHGNet cannot build
                reason = f"{type(exc).__name__}: {exc}"
        return None if reason is None else OracleResult.failure(Status.INVALID_INPUT, reason)

    # -- E(s) and its derivatives --------------------------------------------------------

    def scale_derivatives(self, structures: Sequence[Structure], scales: Sequence[float],
                          order: int = 2) -> np.ndarray:
        """[n, 3] float64 rows (E(s), E'(s), E''(s)) in eV per cell of each crystal with its
        lattice scaled by its ``s`` (fractional coordinates fixed), in one model call;
        columns above ``order`` are NaN."""
        torch = self.torch
        graphs, factors = [], []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for structure, s in zip(structures, scales, strict=True):
                scaled = Structure(Lattice(structure.lattice.matrix * float(s)),
                                   structure.species, structure.frac_coords)
                graph = self.lenient(scaled)
                t = torch.ones((), dtype=graph.lattice.dtype, requires_grad=order > 0)
                graph.lattice = graph.lattice.detach() * t
                graphs.append(graph)
                factors.append(t)
            n_atoms = torch.tensor([len(s) for s in structures], dtype=torch.float32)
            with torch.set_grad_enabled(order > 0):
                energies = self.model(graphs, task="e")["e"].reshape(-1) * n_atoms
                out = np.full((len(graphs), 3), np.nan)
                out[:, 0] = energies.detach().double().numpy()
                if order >= 1:
                    firsts = torch.autograd.grad(energies.sum(), factors, create_graph=order > 1,
                                                 allow_unused=True)
                    firsts = [f if f is not None else torch.zeros(()) for f in firsts]
                    out[:, 1] = [float(f) for f in firsts]
                if order >= 2:
                    total = sum(f for f in firsts if f.requires_grad)
                    seconds = (torch.autograd.grad(total, factors, allow_unused=True)
                               if torch.is_tensor(total) else [None] * len(factors))
                    out[:, 2] = [float(h) if h is not None else 0.0 for h in seconds]
        s = np.asarray(scales, np.float64)
        out[:, 1] /= s  # dE/dt at t = 1 is s E'(s)
        out[:, 2] /= s ** 2
        return out

    def relax_volume(self, structures: Sequence[Structure], min_scale: float, max_scale: float,
                     steps: int) -> list[dict]:
        """The in-graph protocol (:func:`crystaljax.mlip.relax.relax_volume`) on a batch: E on
        the grid, then safeguarded Newton steps around the lowest grid point. Per crystal a
        dict of ``scale``, ``energy``, ``gradient``, ``curvature`` (eV per cell),
        ``has_minimum`` and ``converged``, plus ``reason`` when there is no value."""
        n = len(structures)
        grid = np.linspace(float(min_scale), float(max_scale), GRID_POINTS)
        energies = self.scale_derivatives(
            [s for s in structures for _ in grid], [g for _ in structures for g in grid],
            order=0)[:, 0].reshape(n, len(grid))
        lowest = np.argmin(np.where(np.isfinite(energies), energies, np.inf), axis=1)
        interior = (lowest > 0) & (lowest < len(grid) - 1)
        lo = grid[np.maximum(lowest - 1, 0)]
        hi = grid[np.minimum(lowest + 1, len(grid) - 1)]
        x = grid[lowest].astype(np.float64)
        for _ in range(steps):
            rows = self.scale_derivatives(list(structures), x, order=2)
            for i in range(n):
                g, h = rows[i, 1], rows[i, 2]
                if g < 0:
                    lo[i] = x[i]
                else:
                    hi[i] = x[i]
                newton = x[i] - g / (h if h > 0 else 1.0)
                new = newton if (h > 0 and lo[i] <= newton <= hi[i]) else 0.5 * (lo[i] + hi[i])
                x[i] = new if math.isfinite(new) else x[i]
        final = self.scale_derivatives(list(structures), x, order=2)
        results: list[dict] = []
        for i in range(n):
            e, g, h = final[i]
            finite = math.isfinite(e) and math.isfinite(g) and math.isfinite(h)
            found = {"scale": float(x[i]), "energy": float(e), "gradient": float(g),
                     "curvature": float(h), "has_minimum": bool(interior[i] and finite and h > 0),
                     "converged": bool(finite and h > 0 and abs(g) <= SCALE_TOLERANCE * h)}
            if not interior[i]:
                end_, side = (("min_scale", "below") if lowest[i] == 0 else
                              ("max_scale", "above"))
                found["reason"] = (f"no E(V) minimum in the searched range: the lowest energy "
                                   f"of the grid is at {end_} {grid[lowest[i]]:g} (the minimum "
                                   f"lies {side} the range)")
            elif not found["has_minimum"]:
                found["reason"] = (f"E''(s) = {h:.4g} eV is not positive at s = {x[i]:.4f}: "
                                   "no minimum found")
            elif not found["converged"]:
                found["reason"] = (f"the search did not converge in {steps} steps (last Newton "
                                   f"step {abs(g / h):.2g} in s)")
            results.append(found)
        return results

    # -- full relaxation -----------------------------------------------------------------

    def relax_full(self, structure: Structure, options: CHGNetHostOptions
                   ) -> tuple[Structure, bool, int]:
        """(relaxed structure, converged, optimizer steps) of atoms and cell."""
        from ase import filters, optimize
        from chgnet.model.dynamics import CHGNetCalculator
        from pymatgen.io.ase import AseAtomsAdaptor

        if self._calculator is None:
            with contextlib.redirect_stdout(io.StringIO()):
                self._calculator = CHGNetCalculator(model=self.model, use_device="cpu",
                                                    on_isolated_atoms="error")
        atoms = AseAtomsAdaptor().get_atoms(structure)
        atoms.calc = self._calculator
        cell = getattr(filters, options.cell_filter)(atoms)
        optimizer = getattr(optimize, options.optimizer)(cell, logfile=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converged = bool(optimizer.run(fmax=options.fmax, steps=options.relax_steps))
        relaxed = AseAtomsAdaptor.get_structure(atoms)
        relaxed = Structure(relaxed.lattice, [site.specie for site in relaxed],
                            relaxed.frac_coords)  # drop the calculator's site properties
        return relaxed, converged, int(optimizer.nsteps)

    # -- one property --------------------------------------------------------------------

    def evaluate(self, property_name: str, structures: Sequence[Structure],
                 options: CHGNetHostOptions) -> list[OracleResult]:
        """One result per crystal (assumed checked), computed together; may raise (the
        caller falls back to one crystal at a time)."""
        start = time.monotonic()
        structures = list(structures)
        base: list[Structure] = structures
        extras: list[dict] = [{} for _ in structures]
        if options.relax == "full":
            base = []
            for structure, extra in zip(structures, extras, strict=True):
                relaxed, converged, n_steps = self.relax_full(structure, options)
                base.append(relaxed)
                extra.update(relax_converged=converged, relax_steps=n_steps)
        if options.relax == "none":
            order = 2 if property_name == "bulk_modulus" else 0
            rows = self.scale_derivatives(base, [1.0] * len(base), order=order)
            found = [{"scale": 1.0, "energy": r[0], "gradient": r[1], "curvature": r[2],
                      "has_minimum": True} for r in rows]
        else:
            found = self.relax_volume(base, options.min_scale, options.max_scale, options.steps)
        seconds = (time.monotonic() - start) / max(1, len(structures))
        results = []
        for structure, relaxed, f, extra in zip(structures, base, found, extras, strict=True):
            results.append(_result(property_name, structure, relaxed, f, extra, options, seconds))
        return results


def _result(property_name: str, structure: Structure, relaxed: Structure, found: dict,
            extra: dict, options: CHGNetHostOptions, seconds: float) -> OracleResult:
    """The OracleResult of one crystal from its volume search (or fixed-cell) outcome."""
    s = found["scale"]
    volume0 = relaxed.volume
    volume = volume0 * s ** 3
    extra = dict(extra)
    extra.update(scale=float((volume / structure.volume) ** (1.0 / 3.0)), volume=float(volume),
                 energy_per_atom=float(found["energy"]) / len(structure))
    if options.relax != "none":
        extra.update(gradient=found["gradient"], curvature=found["curvature"])
    if options.relax == "full":
        extra["lattice"] = (np.asarray(relaxed.lattice.matrix) * s).tolist()
    if not (found["has_minimum"] and found.get("converged", True)):  # no number made up
        extra = {k: v for k, v in extra.items()
                 if not (isinstance(v, float) and not math.isfinite(v))}
        status = Status.RELAX_NOT_CONVERGED if found["has_minimum"] else Status.NO_MINIMUM
        return OracleResult(float("nan"), status, found["reason"], seconds, extra)
    if not math.isfinite(found["energy"]):
        return OracleResult(float("nan"), Status.CRASH, "CHGNet returned a non-finite energy",
                            seconds, extra)
    if property_name == "density":
        value = structure.composition.weight / volume * AMU_PER_A3_TO_G_PER_CM3
    elif property_name == "bulk_modulus":
        g, h = found["gradient"], found["curvature"]
        value = (h - 2.0 * g / s) / (9.0 * volume0 * s) * EV_PER_A3_TO_GPA
        if not math.isfinite(value):
            return OracleResult(float("nan"), Status.CRASH,
                                "CHGNet returned a non-finite curvature", seconds, extra)
    else:
        value = extra["energy_per_atom"]
    return OracleResult(float(value), Status.OK, "", seconds, extra)


def unsupported_reason(structure: Structure, max_z: int = 94) -> str | None:
    """Why CHGNet cannot take ``structure`` (disorder, no element, Z beyond its embedding),
    or None."""
    if len(structure) == 0:
        return "the structure has no sites"
    if not structure.is_ordered:
        return "disordered sites are not supported"
    bad = []
    for site in structure:
        symbol = getattr(site.specie, "symbol", str(site.specie))
        try:
            z = Element(symbol).Z
        except ValueError:
            z = 0
        if not 1 <= z <= max_z:
            bad.append(symbol)
    if bad:
        return (f"CHGNet has no element {', '.join(sorted(set(bad)))} (it knows Z = 1-{max_z})")
    return None


def limit_blas_threads(threads: int) -> int:
    """Set the threads of the OpenBLAS libraries loaded in this process (numpy's and
    scipy's; Linux, best effort, like ``threadpoolctl``); returns how many were set.

    The volume search's and the cell filter's 3x3 linear algebra is tiny: spare BLAS
    threads only spin, and next to busy cores that made a full relaxation 5x slower.
    """
    import ctypes

    import scipy.linalg  # noqa: F401  (load scipy's OpenBLAS before limiting it)

    count = 0
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return 0
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
                       "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_"):
            if hasattr(lib, symbol):
                getattr(lib, symbol)(ctypes.c_int(int(threads)))
                count += 1
                break
    return count


_PROCESS_MODELS: dict[str, TorchCHGNet] = {}
_PROCESS_LOCK = threading.Lock()


def process_model(version: str, threads: int | None = None) -> TorchCHGNet:
    """This process's model of ``version`` (loaded on first use; ``threads`` sets torch's
    intra-op threads and OpenBLAS's threads then)."""
    with _PROCESS_LOCK:
        if version not in _PROCESS_MODELS:
            if threads:
                import torch

                torch.set_num_threads(int(threads))
                limit_blas_threads(int(threads))
            _PROCESS_MODELS[version] = TorchCHGNet(version)
        return _PROCESS_MODELS[version]


def evaluate_chunk(model: TorchCHGNet, property_name: str, structures: Sequence[Structure],
                   options: CHGNetHostOptions) -> list[OracleResult]:
    """Results of a batch of crystals; never raises.

    Checked crystals are computed together (``batch_size`` per model call); when that
    raises or runs over its time limit (``time_limit`` x crystals), they are computed one
    at a time, so that only the crystal at fault gets ``CRASH`` or ``TIMEOUT``.
    """
    results: list[OracleResult | None] = [None] * len(structures)
    valid = []
    for i, structure in enumerate(structures):
        invalid = model.check(structure)
        if invalid is None:
            valid.append(i)
        else:
            results[i] = invalid
    for start in range(0, len(valid), options.batch_size):
        batch = valid[start:start + options.batch_size]
        outcomes = _attempt(model, property_name, [structures[i] for i in batch], options)
        if outcomes is None:  # one crystal failed the batch, or it overran: one at a time
            outcomes = [_attempt(model, property_name, [structures[i]], options)[0]
                        for i in batch]
        for i, result in zip(batch, outcomes, strict=True):
            results[i] = result
    return [r if r is not None else OracleResult.failure(Status.ORACLE_ERROR, "no result")
            for r in results]


def _attempt(model: TorchCHGNet, property_name: str, structures: list[Structure],
             options: CHGNetHostOptions) -> list[OracleResult] | None:
    """Compute ``structures`` together; None when that failed and there are several
    (the caller retries them one by one), else a failed result."""
    limit = options.time_limit * len(structures) if options.time_limit else None
    start = time.monotonic()
    try:
        with _time_limit(limit):
            return model.evaluate(property_name, structures, options)
    except _Timeout:
        if len(structures) > 1:
            return None
        return [OracleResult(float("nan"), Status.TIMEOUT,
                             f"over the time limit of {options.time_limit:g} s",
                             time.monotonic() - start)]
    except Exception as exc:
        if len(structures) > 1:
            return None
        return [OracleResult(float("nan"), Status.CRASH, f"{type(exc).__name__}: {exc}",
                             time.monotonic() - start,
                             {"traceback": traceback.format_exc(limit=5)})]


@dataclasses.dataclass(frozen=True)
class CHGNetJob:
    """A batch of crystals as sent to a pool worker."""

    property_name: str
    structures: tuple[dict, ...]
    options: CHGNetHostOptions


def run_job(job: CHGNetJob) -> list[OracleResult]:
    """Compute a job in a worker (the model is loaded on the worker's first job). Never
    raises: an error of this code becomes ``ORACLE_ERROR`` for each crystal."""
    try:
        model = process_model(job.options.version, job.options.threads)
        structures = [Structure.from_dict(d) for d in job.structures]
        return evaluate_chunk(model, job.property_name, structures, job.options)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return [OracleResult.failure(Status.ORACLE_ERROR, reason,
                                     traceback=traceback.format_exc(limit=5))
                for _ in job.structures]


def structure_key(structure: Structure) -> str:
    """Exact identity of a crystal (species, lattice and fractional coordinates to 1e-6)."""
    lattice = np.round(np.asarray(structure.lattice.matrix, np.float64), 6) + 0.0
    frac = np.round(np.asarray(structure.frac_coords, np.float64) % 1.0, 6) % 1.0 + 0.0
    species = "|".join(str(site.species) for site in structure)
    digest = hashlib.sha1(species.encode())
    digest.update(lattice.tobytes())
    digest.update(frac.tobytes())
    return digest.hexdigest()


#: statuses that are the crystal's own outcome, kept in the cache
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
        structures = list(structures)
        if self._closed:
            return [OracleResult.failure(Status.ORACLE_ERROR, "the CHGNet host oracle is closed")
                    for _ in structures]
        try:
            return self._evaluate(structures)
        except Exception as exc:  # last line of defence: training must go on
            reason = f"{type(exc).__name__}: {exc}"
            return [OracleResult.failure(Status.ORACLE_ERROR, reason) for _ in structures]

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
           "build_host", "evaluate_chunk", "limit_blas_threads", "process_model", "run_job", "structure_key",
           "unsupported_reason"]
