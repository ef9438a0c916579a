"""Bulk modulus from pressures or from energies, on the same pw.x runs
(scripts/compare_eos_data.py, docs/DFT.md "What the bulk modulus is fitted on").

For each crystal, five scf runs at volume scales 0.98..1.02 of its cell with the stress
(the bulk-modulus recipe's settings and cutoffs of a preset), then every fit the recipe can
make from a subset of them: the energy scan (``recipe.eos_data: energy``, five energies),
the pressure scan (``pressure``: the default two volumes 0.98 and 1.02, and 0.99 / 1.01,
three and five volumes). Since the runs are shared, the differences are the fits', not
pw.x's. The pressure's Pulay offset is reported as P(V_t) + dE/dV at the template volume.
Results go to a JSON file rewritten after every crystal.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ase.units import GPa

from crystaljax.oracles.qe.equation_of_state import (
    bulk_modulus_from_pressures,
    bulk_modulus_from_scan,
)

#: the scan's volume scales, in the order they are run (each seeded from the one before)
SCALES = (1.0, 0.98, 1.02, 0.99, 1.01)

#: fit name -> (data, volume scales it uses)
FITS: dict[str, tuple[str, tuple[float, ...]]] = {
    "energy_5": ("energy", (0.98, 0.99, 1.0, 1.01, 1.02)),
    "pressure_2": ("pressure", (0.98, 1.02)),
    "pressure_2_narrow": ("pressure", (0.99, 1.01)),
    "pressure_3": ("pressure", (0.98, 1.0, 1.02)),
    "pressure_5": ("pressure", (0.98, 0.99, 1.0, 1.01, 1.02)),
}

#: rock-salt crystals measured besides the validation ones: name -> (a in Å, species)
EXTRA_ROCKSALT: dict[str, tuple[float, tuple[str, str]]] = {
    "KCl": (6.38, ("K", "Cl")), "MnO": (4.44, ("Mn", "O")), "NiO": (4.22, ("Ni", "O")),
    "ZnO": (4.34, ("Zn", "O")),
}


def crystal(name: str):
    """The structure called ``name``: a validation crystal (its PBE lattice), a rock salt of
    :data:`EXTRA_ROCKSALT`, or ``A-B`` on the slowest 2-site template of the benchmarks."""
    from pymatgen.core import Structure

    from crystaljax.benchmarks.dft import fcc_lattice, hardest_two_site_template
    from crystaljax.benchmarks.validation import REFERENCE, ROCKSALT

    if name in REFERENCE:
        return REFERENCE[name].structure()
    if name in EXTRA_ROCKSALT:
        a, species = EXTRA_ROCKSALT[name]
        return Structure(fcc_lattice(a), list(species), ROCKSALT)
    from crystaljax.elements import LARGE

    parts = name.split("-")
    if len(parts) == 2 and all(p in LARGE for p in parts):
        template = hardest_two_site_template()
        return Structure(template.lattice, parts, template.frac_coords)
    raise ValueError(f"unknown crystal {name!r}: a validation crystal, one of "
                     f"{sorted(EXTRA_ROCKSALT)}, or A-B (elements of the large vocabulary) on the 2-site "
                     "template")


def fits(rows: Sequence[Mapping], template_volume: float) -> dict:
    """Every :data:`FITS` fit of one crystal's runs (``rows``: scale, volume in Å^3, energy
    in eV, pressure in GPa), and the Pulay offset P(V_t) + dE/dV (GPa) at the template
    volume (dE/dV of a parabola through the five energies)."""
    by_scale = {round(float(r["scale"]), 6): r for r in rows}
    out: dict = {}
    for name, (data, scales) in FITS.items():
        picked = [by_scale[s] for s in scales if s in by_scale]
        if len(picked) < len(scales):
            continue
        volumes = [r["volume"] for r in picked]
        if data == "energy":
            value, details = bulk_modulus_from_scan(
                volumes, [r["energy"] for r in picked], template_volume)
        else:
            value, details = bulk_modulus_from_pressures(
                volumes, [r["pressure"] for r in picked], template_volume)
        out[name] = {"value": value, "b_method": details["b_method"],
                     "v0": details.get("v0"), "b_prime": details.get("b_prime")}
    if len(by_scale) >= 3 and 1.0 in by_scale:
        v = np.array([r["volume"] for r in rows])
        c = np.polyfit(v, np.array([r["energy"] for r in rows]), 2)
        de_dv = (2 * c[0] * template_volume + c[1]) / GPa
        out["pulay_offset_gpa"] = float(by_scale[1.0]["pressure"] + de_dv)
    return out


def scan(structure, preset: str = "default") -> tuple[list[dict], list[float]]:
    """The five scf runs of :data:`SCALES` with the stress, at ``preset``'s settings of the
    bulk modulus's pressure scan (each run seeded from the nearest before; energies are
    the same fixed point as the energy scan's, at a tighter threshold); raises
    RuntimeError if one fails. Returns the rows and [ecutwfc, ecutrho] in Ry."""
    from crystaljax.oracles.base import Status
    from crystaljax.oracles.qe.attempts import _run, _smeared
    from crystaljax.oracles.qe.cells import scaled
    from crystaljax.oracles.qe.inputs import plane_wave_cutoffs
    from crystaljax.oracles.qe.oracle import QEOracle
    from crystaljax.oracles.qe.recipes import pressure_scan_settings
    from crystaljax.oracles.qe.restarts import AttemptLog
    from crystaljax.oracles.qe.seeds import density_seeds

    rows = []
    with QEOracle("bulk_modulus", preset=preset, cache=None, workers=1) as oracle:
        scf = pressure_scan_settings(_smeared(oracle.settings, oracle.recipe), oracle.recipe)
        log = AttemptLog(len(SCALES) * oracle.runner.time_limit)
        with density_seeds(oracle.runner, oracle.recipe) as seeds:
            for scale in SCALES:
                cell = scaled(structure, scale)
                start = time.monotonic()
                attempt = _run(cell, scf, oracle.family, oracle.runner, oracle.recipe, log,
                               f"bulk-{scale:.3f}", reference=scf, seeds=seeds)
                if attempt.status != Status.OK or attempt.parsed.pressure is None:
                    raise RuntimeError(f"scale {scale}: {attempt.status.name} {attempt.reason}")
                rows.append({"scale": scale, "volume": cell.volume,
                             "energy": attempt.parsed.total_energy,
                             "pressure": attempt.parsed.pressure,
                             "magnetization": attempt.parsed.magnetization,
                             "seconds": round(time.monotonic() - start, 1)})
        cutoffs = list(plane_wave_cutoffs(structure, scf, oracle.family))
    return rows, cutoffs


def compare(out: str, crystals: Sequence[str], preset: str = "default",
            redo: bool = False) -> dict:
    """:func:`scan` and :func:`fits` of each crystal into ``out`` (crystals already there
    are kept unless ``redo``)."""
    from crystaljax.benchmarks.dft import load_json, save_json
    from crystaljax.benchmarks.machine import machine_description

    path = Path(out)
    data = load_json(path)
    data.setdefault("crystals", {})
    data["machine"] = machine_description()
    for name in crystals:
        if name in data["crystals"] and not redo:
            continue
        structure = crystal(name)
        start = time.monotonic()
        rows, cutoffs = scan(structure, preset)
        data["crystals"][name] = {
            "preset": preset, "cutoffs_ry": cutoffs, "template_volume": structure.volume,
            "rows": rows,
            "fits": fits(rows, structure.volume), "seconds": round(time.monotonic() - start, 1),
            "date": time.strftime("%Y-%m-%d")}
        save_json(path, data)
        print(table({"crystals": {name: data["crystals"][name]}}).splitlines()[-1], flush=True)
    return data


def table(data: dict) -> str:
    """Markdown: each crystal's bulk modulus by every fit, the reference where the crystal
    is a validation one, the Pulay offset."""
    from crystaljax.benchmarks.validation import REFERENCE

    names = list(FITS)
    lines = ["| crystal | " + " | ".join(names) + " | PBE reference | Pulay offset (GPa) |",
             "|---" * (len(names) + 3) + "|"]
    for name, entry in data.get("crystals", {}).items():
        f = entry["fits"]
        cells = [f"{f[n]['value']:.2f}" + ("" if f[n]["b_method"] == "eos" else " (local)")
                 if n in f else "" for n in names]
        ref = f"{REFERENCE[name].bulk_modulus:g}" if name in REFERENCE else ""
        pulay = f"{f['pulay_offset_gpa']:+.2f}" if "pulay_offset_gpa" in f else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ref} | {pulay} |")
    return "\n".join(lines)


__all__ = ["EXTRA_ROCKSALT", "FITS", "SCALES", "compare", "crystal", "fits", "scan", "table"]
