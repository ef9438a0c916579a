"""The JAX port of CHGNet (:mod:`crystaljax.mlip`) against the torch reference (``chgnet``).

Random decorations of prototype templates (elements drawn from a vocabulary, every site
displaced by a fixed distance in a random direction, the cell optionally scaled
isotropically) are predicted by ``CHGNet.predict_structure(..., task="efs")`` and by
:func:`crystaljax.mlip.chgnet.energy_forces_stress`. Each graph is built at scale 1 with
``min_scale`` = the lowest scale drawn (the skin the oracle uses), all graphs are padded to
one shape, and the port is compiled once for it. Errors are absolute: energy in eV/atom,
forces (largest component) in eV/Å, stress (largest component) in GPa.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np

#: bounds of the port's errors: eV/atom, eV/Å, GPa
BOUNDS = {"energy": 1e-4, "forces": 1e-3, "stress": 0.05}
UNITS = {"energy": "eV/atom", "forces": "eV/A", "stress": "GPa"}


def random_crystals(prototypes: Sequence[str], count: int, vocabulary: str = "medium",
                    seed: int = 0, displacement: float = 0.05,
                    scale_range: tuple[float, float] | None = (0.85, 1.15)) -> list[dict]:
    """``count`` decorations, cycling through ``prototypes`` (every one used when count
    allows). Each is a dict: ``prototype``, ``structure`` (pymatgen, at scale 1, sites
    displaced by ``displacement`` Å) and ``scale`` (isotropic factor of the lattice,
    uniform in ``scale_range``; 1 when None)."""
    from pymatgen.core import Structure

    from crystaljax.elements import VOCABULARIES
    from crystaljax.templates.prototypes import prototype

    rng = np.random.default_rng(seed)
    symbols = list(VOCABULARIES[vocabulary])
    crystals = []
    for k in range(count):
        template = prototype(prototypes[k % len(prototypes)])
        lattice = np.asarray(template.lattice, float)
        species = [str(s) for s in rng.choice(symbols, template.num_sites)]
        step = rng.normal(size=(template.num_sites, 3))
        step *= displacement / np.linalg.norm(step, axis=1, keepdims=True)
        frac = np.asarray(template.frac_coords, float) + step @ np.linalg.inv(lattice)
        scale = 1.0 if scale_range is None else float(rng.uniform(*scale_range))
        crystals.append({"prototype": template.name, "scale": scale,
                         "structure": Structure(lattice, species, frac)})
    return crystals


def compare(crystals: Sequence[dict], model=None, params=None, min_scale: float | None = None,
            batch_size: int = 16) -> dict:
    """Torch and JAX predictions of ``crystals`` (:func:`random_crystals`) and their errors.

    ``model``: a loaded ``CHGNet`` (default: ``CHGNet.load()``); ``params``: the port's
    parameters (default: from :func:`~crystaljax.mlip.weights.load_weights`); ``min_scale``:
    the graphs' skin (default: the smallest scale among ``crystals``, at most 1).
    Returns ``{"rows": [...], "summary": {...}}`` (see :func:`summarize`).
    """
    import jax

    from crystaljax.mlip import chgnet
    from crystaljax.mlip.graph import build_graph, stack_graphs
    from crystaljax.mlip.weights import load_weights

    if model is None:
        from chgnet.model import CHGNet

        model = CHGNet.load(verbose=False)
    if params is None:
        params = chgnet.to_params(load_weights()[0])
    min_scale = min([1.0] + [c["scale"] for c in crystals]) if min_scale is None else min_scale
    scaled = []
    for c in crystals:
        s = c["structure"].copy()
        s.scale_lattice(s.volume * c["scale"] ** 3)
        scaled.append(s)
    start = time.perf_counter()
    reference = model.predict_structure(scaled, task="efs", batch_size=batch_size)
    torch_seconds = time.perf_counter() - start

    graphs = [build_graph(c["structure"].lattice.matrix, c["structure"].frac_coords,
                          min_scale=min_scale) for c in crystals]
    table = stack_graphs(graphs)

    def inputs(t):
        return _padded_inputs(table, t, scaled[t])

    start = time.perf_counter()
    compiled = jax.jit(chgnet.energy_forces_stress).lower(params, *inputs(0)).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    outputs = [jax.device_get(compiled(params, *inputs(t))) for t in range(len(crystals))]
    jax_seconds = time.perf_counter() - start

    rows = []
    for c, s, ref, out in zip(crystals, scaled, reference, outputs):
        n = len(s)
        rows.append({"prototype": c["prototype"], "formula": s.formula.replace(" ", ""),
                     "sites": n, "scale": round(c["scale"], 4),
                     "energy": float(abs(out["energy"] - ref["e"])),
                     "forces": float(np.abs(out["forces"][:n] - ref["f"]).max()),
                     "stress": float(np.abs(out["stress"] - ref["s"]).max()),
                     "energy_torch": float(ref["e"])})
    summary = summarize(rows)
    summary.update(min_scale=min_scale, padded_sizes=[int(v.shape[1]) for v in (
        table["atom_mask"], table["edge_mask"], table["bond_mask"], table["angle_mask"])],
        torch_seconds=round(torch_seconds, 3), jax_compile_seconds=round(compile_seconds, 3),
        jax_seconds=round(jax_seconds, 3))
    return {"rows": rows, "summary": summary}


def _padded_inputs(table: dict, t: int, structure) -> tuple:
    """(graph t of a stacked ``table``, atomic numbers int32 [N], fractional coordinates
    f32 [N, 3], lattice f32 [3, 3]) of ``structure``, padded to the table's N atoms (H on
    padding sites, which the graph masks)."""
    from crystaljax.mlip.graph import GRAPH_FIELDS

    size = table["atom_mask"].shape[1]
    numbers, frac = np.ones(size, np.int32), np.zeros((size, 3), np.float32)
    numbers[:len(structure)], frac[:len(structure)] = structure.atomic_numbers, \
        structure.frac_coords
    return ({f: table[f][t] for f in GRAPH_FIELDS}, numbers, frac,
            structure.lattice.matrix.astype(np.float32))


#: bound of the volume-relaxed bulk modulus: relative difference to the torch model
BULK_MODULUS_BOUND = 0.01


def compare_bulk_modulus(crystals: Sequence[dict], min_scale: float = 0.8,
                         max_scale: float = 1.3, steps: int = 8, torch_model=None) -> dict:
    """The volume-relaxed bulk modulus (GPa) of ``crystals`` (:func:`random_crystals`, read
    at scale 1) by the port (:func:`crystaljax.mlip.relax.relax_volume` on a graph skinned
    for ``min_scale``, all graphs padded to one shape, compiled once) and by the torch model
    through the same protocol (:meth:`~crystaljax.oracles.chgnet_torch.TorchCHGNet.relax_volume`).
    A crystal counts when both find a converged minimum; the statuses are compared too.
    Returns ``{"rows": [...], "summary": {...}}``."""
    import jax
    import jax.numpy as jnp

    from crystaljax.mlip import chgnet
    from crystaljax.mlip.graph import build_graph, stack_graphs
    from crystaljax.mlip.relax import bulk_modulus, relax_volume
    from crystaljax.mlip.weights import load_weights
    from crystaljax.oracles.chgnet_torch import TorchCHGNet

    structures = [c["structure"] for c in crystals]
    torch_model = torch_model or TorchCHGNet()
    start = time.perf_counter()
    found_torch = torch_model.relax_volume(structures, min_scale, max_scale, steps)
    torch_seconds = time.perf_counter() - start
    params = chgnet.to_params(load_weights()[0])
    table = stack_graphs([build_graph(s.lattice.matrix, s.frac_coords, min_scale=min_scale)
                          for s in structures])

    def relaxed(params, graph, numbers, frac, lattice):
        found = relax_volume(lambda x: chgnet.energy(params, graph, numbers, frac, x * lattice),
                             min_scale, max_scale, steps)
        volume = jnp.abs(jnp.linalg.det(lattice))
        return found, bulk_modulus(found.gradient, found.curvature, found.scale, volume)

    compiled = None
    rows, jax_seconds = [], 0.0
    for t, (s, ref) in enumerate(zip(structures, found_torch)):
        args = (params,) + _padded_inputs(table, t, s)
        if compiled is None:
            compiled = jax.jit(relaxed).lower(*args).compile()
        start = time.perf_counter()
        found, b_jax = jax.device_get(compiled(*args))
        jax_seconds += time.perf_counter() - start
        ok_jax = bool(found.has_minimum and found.converged)
        ok_torch = bool(ref["has_minimum"] and ref["converged"])
        b_torch = float(bulk_modulus(ref["gradient"], ref["curvature"], ref["scale"],
                                     abs(np.linalg.det(s.lattice.matrix))))
        both = ok_jax and ok_torch
        rows.append({"prototype": crystals[t]["prototype"], "formula": s.formula.replace(" ", ""),
                     "sites": len(s), "ok_jax": ok_jax, "ok_torch": ok_torch,
                     "scale_jax": float(found.scale), "scale_torch": ref["scale"],
                     "bulk_modulus_jax": float(b_jax) if ok_jax else None,
                     "bulk_modulus_torch": b_torch if ok_torch else None,
                     "relative": abs(float(b_jax) - b_torch) / abs(b_torch) if both else None})
    relative = np.asarray([r["relative"] for r in rows if r["relative"] is not None], float)
    summary = {"count": len(rows), "both_converged": int(relative.size),
               "same_status": sum(r["ok_jax"] == r["ok_torch"] for r in rows),
               "bound": BULK_MODULUS_BOUND, "min_scale": min_scale, "max_scale": max_scale,
               "steps": steps, "max_relative": float(relative.max()) if relative.size else None,
               "median_relative": float(np.median(relative)) if relative.size else None,
               "within": bool(relative.size and relative.max() <= BULK_MODULUS_BOUND),
               "torch_seconds": round(torch_seconds, 2), "jax_seconds": round(jax_seconds, 2)}
    return {"rows": rows, "summary": summary}


def summarize(rows: Sequence[dict]) -> dict:
    """Max and mean abs error per quantity (energy eV/atom, forces eV/Å, stress GPa), the
    bounds, whether each max is within its bound, and the counts."""
    summary = {"count": len(rows), "prototypes": len({r["prototype"] for r in rows}),
               "bounds": dict(BOUNDS), "units": dict(UNITS)}
    for q, bound in BOUNDS.items():
        values = np.asarray([r[q] for r in rows], float)
        summary[q] = {"max": float(values.max()), "mean": float(values.mean()),
                      "within": bool(values.max() <= bound)}
    return summary


def summary_line(summary: dict) -> str:
    """One-line table of the maxima against the bounds."""
    cells = [f"{q} max {summary[q]['max']:.2e} {UNITS[q]} (mean {summary[q]['mean']:.1e}, "
             f"bound {BOUNDS[q]:g}{'' if summary[q]['within'] else ' EXCEEDED'})" for q in BOUNDS]
    return f"{summary['count']} crystals, {summary['prototypes']} prototypes | " + " | ".join(cells)


def write_json(result: dict, path: str, **settings) -> None:
    """``result`` as JSON at ``path``, with ``settings``, this machine's description and the
    SHA-256 of the port's source (crystaljax/mlip/chgnet.py) the numbers belong to."""
    import hashlib
    import os

    from crystaljax.benchmarks.machine import machine_description
    from crystaljax.mlip import chgnet

    source = hashlib.sha256(open(chgnet.__file__, "rb").read()).hexdigest()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"settings": settings, "machine": machine_description(),
                   "port_sha256": source, **result}, f, indent=1)


__all__ = ["BOUNDS", "BULK_MODULUS_BOUND", "UNITS", "compare", "compare_bulk_modulus",
           "random_crystals", "summarize", "summary_line", "write_json"]
