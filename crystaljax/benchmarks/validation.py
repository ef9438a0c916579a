"""Validation of a QE preset against published PBE numbers (scripts/validate_dft.py, the slow
tests of tests/test_qe_validation.py, docs/VALIDATION.md).

Each crystal is built at its PBE equilibrium lattice constant; the band gap and the bulk
modulus are computed there, and the density after a full vc-relax is compared with the
density of that PBE lattice. Results go to a JSON file rewritten after every crystal.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pymatgen.core import Structure

if TYPE_CHECKING:
    from crystaljax.oracles.qe.presets import Preset

ROCKSALT = [[0, 0, 0], [0.5, 0.5, 0.5]]
DIAMOND = [[0, 0, 0], [0.25, 0.25, 0.25]]
FCC1 = [[0, 0, 0]]


@dataclasses.dataclass(frozen=True)
class Reference:
    """A validation crystal: fcc primitive cell of conventional lattice constant ``a`` (Å)
    with ``species`` at fractional ``coords``, its PBE band gap (eV; 0 for a metal) and bulk
    modulus (GPa), and where those numbers come from."""

    a: float
    species: tuple[str, ...]
    coords: list
    gap: float
    bulk_modulus: float
    source: str

    def structure(self) -> Structure:
        from crystaljax.benchmarks.dft import fcc_lattice

        return Structure(fcc_lattice(self.a), list(self.species), self.coords)


_DELTA = ("Lejaeghere et al., Science 351, aad3000 (2016): all-electron (WIEN2k) PBE equation "
          "of state of the elemental crystal")
_HAAS = ("Haas, Tran and Blaha, Phys. Rev. B 79, 085104 (2009) (PBE a0 and B0, all-electron); "
         "Kohn-Sham PBE gap as commonly reported")

#: crystal -> reference (approximate published PBE values; sources in :attr:`Reference.source`)
REFERENCE: dict[str, Reference] = {
    "Si": Reference(5.47, ("Si", "Si"), DIAMOND, 0.6, 89.0, _HAAS),
    "NaCl": Reference(5.69, ("Na", "Cl"), ROCKSALT, 5.0, 24.0, _HAAS),
    "MgO": Reference(4.25, ("Mg", "O"), ROCKSALT, 4.5, 155.0, _HAAS),
    "LiF": Reference(4.07, ("Li", "F"), ROCKSALT, 8.9, 67.0, _HAAS),
    "TiN": Reference(4.25, ("Ti", "N"), ROCKSALT, 0.0, 280.0, _HAAS + " (metal)"),
    "Cu": Reference(3.63, ("Cu",), FCC1, 0.0, 141.0, _DELTA + " (metal)"),
    "Al": Reference(4.04, ("Al",), FCC1, 0.0, 78.0, _DELTA + " (metal)"),
}
#: allowed error: absolute (eV) for the gap, relative for the others
TARGETS = {"band_gap": 0.3, "bulk_modulus": 0.15, "density": 0.03}


def evaluate(prop: str, structures: list, runner, preset: str | Preset = "default",
             workers: int | None = 1, timings: dict | None = None, **options):
    """QE results of ``structures`` with ``preset`` and no cache, and the seconds
    (``workers``: a local pool of that many; ``None``: the oracle's default executor).

    With a local pool the clock starts once its workers are up and have loaded the
    pseudopotential family (a training run's pool stays up for thousands of crystals, so
    the start-up, about 3 s here, is not part of a crystal's cost; with several workers at
    least one has imported the job's modules and loaded the family);
    ``timings``, if given, receives ``pool_start_s``, the seconds the pool took to start."""
    from crystaljax.oracles.executors import LocalPoolExecutor
    from crystaljax.oracles.qe.jobs import worker_ready
    from crystaljax.oracles.qe.oracle import QEOracle

    executor = None
    if workers is not None:
        executor = LocalPoolExecutor(workers)
        options["executor"] = executor
    try:
        oracle = QEOracle(prop, preset=preset, cache=None, runner=runner,
                          owns_executor=workers is not None, **options)
    except BaseException:
        if executor is not None:
            executor.shutdown()
        raise
    try:
        if executor is not None:
            start = time.time()
            ready = [executor.submit(worker_ready, oracle.family_source)
                     for _ in range(workers)]
            for future in ready:
                future.result()
            if timings is not None:
                timings["pool_start_s"] = round(time.time() - start, 2)
        t0 = time.time()
        return oracle.evaluate(structures), time.time() - t0
    finally:
        oracle.close()


def validate(name: str, runner, nstep: int, preset: str = "default",
             properties: Sequence[str] = tuple(TARGETS)) -> dict:
    """Gap, bulk modulus and relaxed density (vc-relax of ``nstep`` steps) of one crystal
    of :data:`REFERENCE` against its PBE reference (``properties``: those of them)."""
    from crystaljax.oracles.qe.recipes import density_of

    ref = REFERENCE[name]
    structure = ref.structure()
    rows = {}
    for prop, reference, recipe in (("band_gap", ref.gap, {}),
                                    ("bulk_modulus", ref.bulk_modulus, {}),
                                    ("density", density_of(structure), {"nstep": nstep})):
        if prop not in properties:
            continue
        (result,), wall = evaluate(prop, [structure], runner, preset, 1, recipe=recipe)
        error = result.value - reference
        if prop != "band_gap":
            error /= reference
        rows[prop] = {
            "value": result.value, "reference": reference, "error": error,
            "within_target": bool(abs(error) <= TARGETS[prop]), "status": result.status.name,
            "reason": result.reason, "seconds": round(wall, 1), "preset": preset,
            "extra": {k: v for k, v in result.extra.items() if k != "output_tail"},
        }
        print(f"{name} {prop}: {result.value:.4g} (ref {reference:.4g}) {result.status.name} "
              f"{wall:.0f} s", flush=True)
    return rows


def validate_all(out: str, crystals: Sequence[str], mpi_ranks: int = 1, nstep: int = 60,
                 preset: str = "default", properties: Sequence[str] = tuple(TARGETS)) -> dict:
    """:func:`validate` every crystal's ``properties`` into ``out`` (other crystals' and
    properties' entries are kept)."""
    from crystaljax.benchmarks.dft import load_json, save_json
    from crystaljax.oracles.qe.runner import RunnerConfig

    runner = RunnerConfig(mpi_ranks=mpi_ranks, time_limit=3600.0)
    path = Path(out)
    data = load_json(path)
    for name in crystals:
        data[name] = {**data.get(name, {}),
                      **validate(name, runner, nstep, preset, properties)}
        save_json(path, data)
    return data


def validation_table(data: dict) -> str:
    """The Markdown table of a :func:`validate_all` results file."""
    lines = ["| crystal | property | crystaljax | PBE reference | error | within target | s |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in data.items():
        for prop, r in rows.items():
            err = f"{r['error']:+.2f} eV" if prop == "band_gap" else f"{100 * r['error']:+.1f}%"
            lines.append(f"| {name} | {prop} | {r['value']:.3f} | {r['reference']:.3f} | {err} | "
                         f"{'yes' if r['within_target'] else 'no'} | {r['seconds']} |")
    return "\n".join(lines)


__all__ = ["REFERENCE", "TARGETS", "Reference", "evaluate", "validate", "validate_all",
           "validation_table"]
