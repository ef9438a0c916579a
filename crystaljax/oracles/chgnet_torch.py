"""The torch CHGNet behind the ``chgnet-host`` oracle: options, E(s) and its derivatives by
torch autograd, the volume search of the in-graph protocol, full relaxation, and the
OracleResult of one crystal (see :mod:`crystaljax.oracles.chgnet_host`)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from crystaljax.config import check, from_mapping, option
from crystaljax.mlip.relax import GRID_POINTS, SCALE_TOLERANCE, STOP_FRACTION, parabola_vertex
from crystaljax.mlip.weights import CHECKPOINTS
from crystaljax.oracles.base import OracleResult, Status

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
        the grid, then up to ``steps`` safeguarded Newton steps around the lowest grid point,
        from the vertex of the parabola through it and its neighbours (a crystal stops
        when the next step would be below ``SCALE_TOLERANCE * STOP_FRACTION``, or at once
        without a bracketed minimum). Per crystal a
        dict of ``scale``, ``energy``, ``gradient``, ``curvature`` (eV per cell),
        ``has_minimum`` and ``converged``, plus ``reason`` when there is no value."""
        n = len(structures)
        grid = np.linspace(float(min_scale), float(max_scale), GRID_POINTS)
        energies = self.scale_derivatives(
            [s for s in structures for _ in grid], [g for _ in structures for g in grid],
            order=0)[:, 0].reshape(n, len(grid))
        lowest = np.argmin(np.where(np.isfinite(energies), energies, np.inf), axis=1)
        at_low, at_high = lowest == 0, lowest == len(grid) - 1
        x = parabola_vertex(grid, energies, lowest, np).astype(np.float64)
        final = self.scale_derivatives(list(structures), x, order=2)
        slope = final[:, 1].copy()
        bracketed = (~at_low & ~at_high) | (at_low & (slope < 0)) | (at_high & (slope > 0))
        lo = grid[np.maximum(lowest - 1, 0)]
        hi = grid[np.minimum(lowest + 1, len(grid) - 1)]
        for _ in range(steps):
            g, h = final[:, 1], final[:, 2]
            done = (h > 0) & (np.abs(g) <= SCALE_TOLERANCE * STOP_FRACTION * h)
            active = np.flatnonzero(bracketed & ~done)
            if not active.size:
                break
            for i in active:
                if g[i] < 0:
                    lo[i] = x[i]
                else:
                    hi[i] = x[i]
                newton = x[i] - g[i] / (h[i] if h[i] > 0 else 1.0)
                new = (newton if (h[i] > 0 and lo[i] <= newton <= hi[i])
                       else 0.5 * (lo[i] + hi[i]))
                x[i] = new if math.isfinite(new) else x[i]
            final[active] = self.scale_derivatives([structures[i] for i in active], x[active],
                                                   order=2)
        results: list[dict] = []
        for i in range(n):
            e, g, h = final[i]
            finite = math.isfinite(e) and math.isfinite(g) and math.isfinite(h)
            found = {"scale": float(x[i]), "energy": float(e), "gradient": float(g),
                     "curvature": float(h), "has_minimum": bool(bracketed[i]),
                     "converged": bool(finite and h > 0 and abs(g) <= SCALE_TOLERANCE * h)}
            if not bracketed[i]:
                end_, side = (("min_scale", "below") if at_low[i] else ("max_scale", "above"))
                found["reason"] = (f"no E(V) minimum in the searched range: the lowest energy "
                                   f"of the grid is at {end_} {grid[lowest[i]]:g} and E'(s) = "
                                   f"{slope[i]:+.4g} eV there (the minimum lies {side} the "
                                   "range)")
            elif not found["converged"]:
                found["reason"] = (f"the search did not converge in {steps} steps (s = "
                                   f"{x[i]:.4f}, E' = {g:.3g} eV, E'' = {h:.3g} eV)")
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


