"""Elemental reference energies of CHGNet: every element relaxed once by the same model.

A formation energy needs the energy per atom of each element in its reference state,
computed by the same model as the crystal (CHGNet's energies are on Materials Project's
scale, so MP's own elemental energies would mix two models' errors). Each element is
placed in a few candidate structures (:data:`CANDIDATES`): fcc, bcc, hcp (ideal c/a),
simple cubic, diamond and a dimer in a cubic box. Each candidate is volume-relaxed by the
JAX port (isotropic scaling, fractional coordinates fixed, ``SCALE_RANGE`` = 0.7-1.5 x the
initial size): E on ``GRID`` evenly spaced scales first, then ``STEPS`` safeguarded Newton
steps (:func:`crystaljax.mlip.relax.relax_volume`) between the neighbours of the lowest
grid point. The scan matters: over so wide a range E(s) is often not monotonic away from
the minimum (a plateau, a bump), so a bracket check at the range's ends alone would miss
minima. The candidates with a minimum inside the range are kept and the lowest energy per
atom is the element's reference (the structure and the scale are recorded). Isotropic
scaling of the dimer's box scans its bond length: the box is large enough that no image
comes within CHGNet's 6 Å cut-off at the smallest scale, so it is an isolated molecule.

Initial nearest-neighbour distances come from pymatgen's radii (metallic radius, van der
Waals radius) and the covalent radii (Cordero et al. 2008, via ASE; pymatgen has none):

* close-packed distance ``d_cp``: twice the metallic radius where pymatgen has one (the
  metals), else covalent + van der Waals radius (between a bond and a contact);
* fcc, hcp, bcc: ``d_cp``; simple cubic: ``0.92 d_cp`` (its minima sit about 8 % shorter);
  diamond: ``(2 r_cov + d_cp) / 2``; dimer: ``2 r_cov``;
* periodic candidates never go below ``MIN_PERIODIC_BOND`` (1.4 Å) at the smallest scale:
  shorter bonds exist in molecules (H2, N2, O2, F2), which the dimer covers, and a denser
  lattice would make the skinned graph (every pair within 6 Å / 0.7) very large.

The candidates of one structure are relaxed together (``vmap`` over elements, their graphs
padded to one shape, rounded up to a power of two so that structures of similar size share
one compiled program). The table is cached as JSON in ``$CRYSTALJAX_CACHE_DIR/chgnet/``,
keyed by the checkpoint's SHA-256 (the weights' record) and :data:`CANDIDATES_VERSION`, so
each element is computed once per machine; elements missing from the table are computed
and merged in. The missing elements' run time is recorded.

Not covered by the candidates: molecular crystals of larger molecules (S8, P4), graphite,
chains (Se, Te) and layered structures; for such elements the reference is the best of the
candidates (e.g. diamond for carbon), which the docs tabulate.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ase.data import covalent_radii
from pymatgen.core import Element

from crystaljax.mlip import chgnet
from crystaljax.mlip.graph import ATOM_CUTOFF, build_graph, stack_graphs
from crystaljax.mlip.relax import relax_volume
from crystaljax.mlip.weights import DEFAULT_VERSION, _sha256, checkpoint_path, load_weights
from crystaljax.paths import default_cache_dir

#: bump when the candidates, their initial sizes or the search change (a new cache file)
CANDIDATES_VERSION = 1
#: searched range of the lattice-constant (bond-length) scale around the initial size
SCALE_RANGE = (0.7, 1.5)
#: scales of the first scan over SCALE_RANGE (spacing 0.05)
GRID = 17
#: safeguarded Newton steps of the local search around the lowest grid point
STEPS = 8
#: Å: the shortest nearest-neighbour distance a periodic candidate is searched at
MIN_PERIODIC_BOND = 1.4
#: Å: space between the dimer's images beyond the 6 Å cut-off at the smallest scale
DIMER_MARGIN = 1.0


class ReferenceEnergyError(ValueError):
    """An element without a reference energy (no candidate has a minimum in range)."""


def _radius(value) -> float | None:
    return None if value is None else float(value)


def radii(symbol: str) -> dict[str, float]:
    """``covalent`` (Cordero, via ASE), ``metallic`` (pymatgen; 0 when it has none) and
    ``van_der_waals`` (pymatgen) radii of ``symbol`` in Å."""
    element = Element(symbol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No data available for metallic_radius"
        metallic = _radius(element.metallic_radius)
        vdw = _radius(element.van_der_waals_radius)
    covalent = float(covalent_radii[element.Z])
    if vdw is None or not math.isfinite(vdw) or vdw <= 0:
        vdw = 2.0 * covalent
    return {"covalent": covalent, "metallic": metallic or 0.0, "van_der_waals": vdw}


def close_packed_distance(symbol: str) -> float:
    """Initial nearest-neighbour distance (Å) of ``symbol`` in a close-packed lattice: twice
    its metallic radius, or covalent + van der Waals radius when pymatgen has no metallic one."""
    r = radii(symbol)
    return 2.0 * r["metallic"] if r["metallic"] > 0 else r["covalent"] + r["van_der_waals"]


# --- the candidates: nearest-neighbour distance d -> (lattice rows Å, fractional coordinates)

def _fcc(d):
    return d / math.sqrt(2) * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0.0]]), np.zeros((1, 3))


def _bcc(d):
    return d / math.sqrt(3) * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1.0]]), np.zeros((1, 3))


def _hcp(d):
    c = d * math.sqrt(8.0 / 3.0)  # ideal c/a
    lattice = np.array([[d, 0, 0], [-d / 2, d * math.sqrt(3) / 2, 0], [0, 0, c]])
    return lattice, np.array([[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])


def _simple_cubic(d):
    return d * np.eye(3), np.zeros((1, 3))


def _diamond(d):
    a = d * 4 / math.sqrt(3)
    lattice = a / 2 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0.0]])
    return lattice, np.array([[0, 0, 0], [0.25, 0.25, 0.25]])


def _dimer(d):
    box = d + ATOM_CUTOFF / SCALE_RANGE[0] + DIMER_MARGIN
    return box * np.eye(3), np.array([[0, 0, 0], [d / box, 0, 0]])


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One candidate structure of an element.

    Attributes:
      name: ``fcc``, ``bcc``, ``hcp``, ``simple_cubic``, ``diamond`` or ``dimer``.
      cell: nearest-neighbour distance (Å) -> (lattice rows, fractional coordinates).
      distance: symbol -> initial nearest-neighbour distance (Å).
      periodic: whether ``MIN_PERIODIC_BOND`` applies (not to the molecule).
    """

    name: str
    cell: Callable[[float], tuple[np.ndarray, np.ndarray]]
    distance: Callable[[str], float]
    periodic: bool = True

    def initial_distance(self, symbol: str) -> float:
        d = self.distance(symbol)
        if self.periodic:
            d = max(d, MIN_PERIODIC_BOND / SCALE_RANGE[0])
        return d


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("fcc", _fcc, close_packed_distance),
    Candidate("bcc", _bcc, close_packed_distance),
    Candidate("hcp", _hcp, close_packed_distance),
    Candidate("simple_cubic", _simple_cubic, lambda s: 0.92 * close_packed_distance(s)),
    Candidate("diamond", _diamond,
              lambda s: 0.5 * (2 * radii(s)["covalent"] + close_packed_distance(s))),
    Candidate("dimer", _dimer, lambda s: 2 * radii(s)["covalent"], periodic=False),
)

_ATOMS = 2  # every candidate cell is padded to two sites


#: smallest padded (edges, bonds, angles): small candidates (dimers, large atoms) share one
#: compiled program, which costs more than their evaluations
_SMALLEST_SIZES = (512, 256, 1024)


def _bucket(n: int, smallest: int) -> int:
    """``n`` rounded up to a power of two (at least ``smallest``)."""
    return max(smallest, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def scale_grid() -> np.ndarray:
    """The ``GRID`` scales, evenly spaced over ``SCALE_RANGE``, that are scanned first."""
    return np.linspace(SCALE_RANGE[0], SCALE_RANGE[1], GRID, dtype=np.float32)


def relax_on_grid(energy_of_scale, grid, steps: int):
    """(scale, energy, has_minimum) of the lowest minimum of E(s) over ``grid``'s range:
    :func:`relax_volume` with ``grid``'s range and number of points (E on the grid, then
    Newton steps inside the two grid intervals around the lowest point). No minimum when
    that point is an end of the grid or the local search does not converge on one."""
    found = relax_volume(energy_of_scale, grid[0], grid[-1], steps, grid_points=grid.shape[0])
    return found.scale, found.energy, found.has_minimum & found.converged


@functools.partial(jax.jit, static_argnames=("steps",))
def _relax_batch(params, graphs, numbers, frac, lattices, grid, steps):
    """(scale, energy per cell, has_minimum) of each candidate of a batch (vmapped)."""

    def one(graph, z, f, lattice):
        return relax_on_grid(lambda s: chgnet.energy(params, graph, z, f, s * lattice), grid,
                             steps)

    return jax.vmap(one)(graphs, numbers, frac, lattices)


def relax_candidate(params, candidate: Candidate, symbols: Sequence[str]) -> list[dict]:
    """Volume-relax ``candidate`` for every element of ``symbols`` in one vmapped call;
    one record per element: ``energy_per_atom`` (eV/atom, None without a minimum),
    ``scale``, ``nn_distance`` (Å at the minimum), ``has_minimum``."""
    cells, graphs = [], []
    for symbol in symbols:
        d = candidate.initial_distance(symbol)
        lattice, frac = candidate.cell(d)
        cells.append((d, lattice, frac))
        graphs.append(build_graph(lattice, frac, min_scale=SCALE_RANGE[0]))
    sizes = (_ATOMS,) + tuple(_bucket(max(g.sizes[k] for g in graphs), smallest)
                                  for k, smallest in zip((1, 2, 3), _SMALLEST_SIZES))
    sizes += (sizes[1],)  # message edges: the directed edges (no symmetry reduction)
    table = stack_graphs(graphs, sizes)
    graph = {k: jnp.asarray(v) for k, v in table.items() if k != "num_atoms"}
    n_sites = len(cells[0][2])
    frac = np.zeros((len(symbols), _ATOMS, 3), np.float32)
    frac[:, :n_sites] = [c[2] for c in cells]
    numbers = np.ones((len(symbols), _ATOMS), np.int32)  # H on the masked padding site
    numbers[:, :n_sites] = [[Element(s).Z] for s in symbols]
    lattices = np.stack([c[1] for c in cells]).astype(np.float32)
    scale, energy, ok = jax.device_get(_relax_batch(
        params, graph, jnp.asarray(numbers), jnp.asarray(frac), jnp.asarray(lattices),
        jnp.asarray(scale_grid()), steps=STEPS))
    records = []
    for i, (d, _, _) in enumerate(cells):
        found = bool(ok[i])
        records.append({"energy_per_atom": float(energy[i]) / n_sites if found else None,
                        "scale": round(float(scale[i]), 5), "nn_distance": round(d * float(scale[i]), 4),
                        "initial_nn_distance": round(d, 4), "has_minimum": found})
    return records


def compute_references(symbols: Sequence[str], version: str = DEFAULT_VERSION,
                       cache_dir: str | Path | None = None) -> dict[str, dict]:
    """Relax every candidate of every element of ``symbols`` (no cache); one record per
    element: ``energy_per_atom`` and ``structure`` of the lowest candidate with a minimum
    (None when none has one), ``scale``, ``nn_distance`` and ``candidates`` (all records)."""
    state_dict, _ = load_weights(version, cache_dir)
    params = chgnet.to_params(state_dict)
    per_candidate = {c.name: relax_candidate(params, c, symbols) for c in CANDIDATES}
    table = {}
    for i, symbol in enumerate(symbols):
        candidates = {name: records[i] for name, records in per_candidate.items()}
        found = {n: r for n, r in candidates.items() if r["has_minimum"]}
        best = min(found, key=lambda n: found[n]["energy_per_atom"]) if found else None
        table[symbol] = {"energy_per_atom": found[best]["energy_per_atom"] if best else None,
                         "structure": best,
                         "scale": found[best]["scale"] if best else None,
                         "nn_distance": found[best]["nn_distance"] if best else None,
                         "candidates": candidates}
    return table


def references_path(version: str = DEFAULT_VERSION, cache_dir: str | Path | None = None) -> Path:
    """The cache file of the reference table of checkpoint ``version``: its name holds the
    checkpoint's SHA-256, the candidate-set version and a hash of the method (the search
    settings and the source of the model, the volume search and this module), so a change
    to any of them computes the table again."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    sha = _sha256(checkpoint_path(version))
    return folder / "chgnet" / (f"references_{version}_{sha[:16]}_c{CANDIDATES_VERSION}_"
                                f"m{_method_hash()}.json")


def _method_hash() -> str:
    """12 hex digits over the search settings and the source of chgnet.py, relax.py and
    this module."""
    from crystaljax.mlip import chgnet as model
    from crystaljax.mlip import relax

    digest = hashlib.sha256(repr((SCALE_RANGE, GRID, STEPS, MIN_PERIODIC_BOND, DIMER_MARGIN,
                                  _SMALLEST_SIZES)).encode())
    for module in (model, relax, __import__(__name__, fromlist=["_"])):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_table(symbols: Sequence[str], version: str = DEFAULT_VERSION,
               cache_dir: str | Path | None = None) -> dict[str, dict]:
    """The cached records of ``symbols`` (see :func:`compute_references`), computing (and
    caching) the elements that the table does not hold yet."""
    symbols = list(dict.fromkeys(symbols))
    path = references_path(version, cache_dir)
    elements = _read(path).get("elements", {})
    missing = [s for s in symbols if s not in elements]
    if missing:
        start = time.perf_counter()
        computed = compute_references(missing, version, cache_dir)
        seconds = round(time.perf_counter() - start, 2)
        data = _read(path)  # another process may have added elements meanwhile
        data.setdefault("elements", {})
        data.update({"model": f"CHGNet {version}", "weights_sha256": _sha256(checkpoint_path(version)),
                     "candidates_version": CANDIDATES_VERSION,
                     "candidates": [c.name for c in CANDIDATES], "scale_range": list(SCALE_RANGE),
                     "steps": STEPS, "min_periodic_bond": MIN_PERIODIC_BOND})
        runs = data.setdefault("runs", [])
        runs.append({"symbols": missing, "seconds": seconds, "jax": jax.__version__,
                     "backend": jax.default_backend()})
        for symbol, record in computed.items():
            data["elements"][symbol] = dict(record, run=len(runs) - 1)
        _write_json(path, data)
        elements = data["elements"]
    return {s: elements[s] for s in symbols}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def reference_energies(symbols: Sequence[str], version: str = DEFAULT_VERSION,
                       cache_dir: str | Path | None = None) -> dict[str, tuple[float, str]]:
    """symbol -> (reference energy in eV/atom, structure name) of CHGNet ``version``,
    from the cache (computed once per machine and element; see the module docstring).

    Raises:
      ReferenceEnergyError: an element none of whose candidates has a minimum in range.
    """
    table = load_table(symbols, version, cache_dir)
    missing = {s: {n: r["has_minimum"] for n, r in rec["candidates"].items()}
               for s, rec in table.items() if rec["energy_per_atom"] is None}
    if missing:
        raise ReferenceEnergyError(f"no candidate structure of {sorted(missing)} has an energy "
                                   f"minimum in {SCALE_RANGE} x its initial size: {missing}")
    return {s: (float(rec["energy_per_atom"]), rec["structure"]) for s, rec in table.items()}


__all__ = ["CANDIDATES", "CANDIDATES_VERSION", "Candidate", "ReferenceEnergyError", "SCALE_RANGE",
           "STEPS", "close_packed_distance", "compute_references", "load_table", "radii",
           "reference_energies", "references_path", "relax_candidate"]
