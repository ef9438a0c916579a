"""Two pseudopotential sets of one element side by side on crystals of the RL templates.

A set converged on its elemental crystal at equilibrium can still fail where the templates
put it: compressed cells, short bonds to anions, the element on every site. This runs the
``default`` preset's recipes on the same crystals with the element's set from the
``default`` family and with an alternative ld1.x input, every element at one uniform
cutoff (``ecutrho`` = 8 ``ecutwfc``) high enough for both sets, so that what differs is the
set, not the basis (``scripts/compare_pseudo_sets.py``; docs/PSEUDOPOTENTIALS.md, "The
valence-only Mg").

Rows: crystal, set, property, value (eV or GPa), the pressures of the bulk modulus's scan
(GPa, volume x 0.98 and 1.02), wall time (s, 1 pw.x rank, on a warm one-worker pool:
:func:`crystaljax.benchmarks.validation.evaluate`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pymatgen.core import Structure

from crystaljax.benchmarks.dft import cell4, cubic5, fcc_lattice, rock_salt

#: (label, structure maker) of Mg crystals: the validation MgO, MgO compressed to 0.80 of
#: its volume, MgS, fcc Mg compressed to 0.70 of its volume, and decorations of the
#: CrystalGym templates (Mg on the B site, on the A site, on every site: Mg-Mg 2.14 Å
#: against 3.2 Å in the metal).
MG_CRYSTALS: list[tuple[str, Callable[[], Structure]]] = [
    ("MgO rock salt, a=4.25", lambda: rock_salt("Mg", "O", 4.25)),
    ("MgO rock salt, a=3.95 (V x 0.80)", lambda: rock_salt("Mg", "O", 3.95)),
    ("MgS rock salt, a=5.20", lambda: rock_salt("Mg", "S", 5.20)),
    ("fcc Mg, a=4.00 (V x 0.70)", lambda: Structure(fcc_lattice(4.00), ["Mg"], [[0, 0, 0]])),
    ("5-site, a=4.2748 (KMgF3)", lambda: cubic5(4.2748, ["K", "Mg", "F", "F", "F"])),
    ("5-site, a=4.2748 (MgMgO3)", lambda: cubic5(4.2748, ["Mg", "Mg", "O", "O", "O"])),
    ("5-site, a=4.2748 (Mg5)", lambda: cubic5(4.2748, ["Mg"] * 5)),
    ("4-site, a=5.1693 (CaMgO2)", lambda: cell4(["Ca", "Mg", "O", "O"])),
]

#: (label, structure maker) of O crystals: the validation MgO, MgO compressed to 0.80 of its
#: volume, rock-salt ZnO and TiO (a 3d metal with its d shell, O's bond to a transition
#: metal), and decorations of the CrystalGym templates (SrTiO3 on the band-gap cell, MgMgO3
#: on the bulk-modulus cell, O on three of five sites).
O_CRYSTALS: list[tuple[str, Callable[[], Structure]]] = [
    ("MgO rock salt, a=4.25", lambda: rock_salt("Mg", "O", 4.25)),
    ("MgO rock salt, a=3.95 (V x 0.80)", lambda: rock_salt("Mg", "O", 3.95)),
    ("ZnO rock salt, a=4.28", lambda: rock_salt("Zn", "O", 4.28)),
    ("TiO rock salt, a=4.18", lambda: rock_salt("Ti", "O", 4.18)),
    ("5-site, a=4.2748 (MgMgO3)", lambda: cubic5(4.2748, ["Mg", "Mg", "O", "O", "O"])),
    ("5-site, a=4.5443 (SrTiO3)", lambda: cubic5(4.5443, ["Sr", "Ti", "O", "O", "O"])),
]

#: the crystals per element of :func:`compare` (``--element``)
CRYSTALS: dict[str, list[tuple[str, Callable[[], Structure]]]] = {
    "Mg": MG_CRYSTALS, "O": O_CRYSTALS}


def uniform_preset(ecutwfc: float, dual: float | None = None,
                   sets: Mapping[str, str] | None = None):
    """``default`` with every element at ``ecutwfc`` (Ry) and ``ecutrho`` = ``dual`` x that
    (default: 8) for every property; ``sets``: element -> ld1.x input replacing the
    family's."""
    from crystaljax.oracles.qe import presets

    base = presets.get_preset("default")
    dual = presets.PAW_DUAL if dual is None else float(dual)
    name = f"default@{ecutwfc:g}" + ("" if dual == presets.PAW_DUAL else f"/{dual * ecutwfc:g}")
    name += "".join(f"[{e}={Path(i).name}]" for e, i in sorted((sets or {}).items()))
    return dataclasses.replace(
        base, name=name, generated={**base.generated, **(sets or {})},
        cutoffs=presets._cutoffs(dict.fromkeys(base.cutoffs, ecutwfc), dual),
        property_cutoffs={})


def compare(element: str, alternative: str, ecutwfc: float, out: str | Path,
            properties: Sequence[str] = ("band_gap", "bulk_modulus"),
            only: Sequence[str] | None = None) -> list[dict]:
    """Each crystal of :data:`CRYSTALS` ``[element]`` (``only``: labels containing one of
    these strings) and property with the ``default`` family's set of ``element`` and with
    ``alternative`` (an ld1.x input), both at ``ecutwfc``. Rows are appended to ``out``
    (JSON list) as they finish; returns the new rows."""
    from crystaljax.benchmarks.validation import evaluate
    from crystaljax.oracles.base import Status
    from crystaljax.oracles.qe import presets

    if element not in CRYSTALS:
        raise ValueError(f"no crystals for {element!r}; known: {sorted(CRYSTALS)}")
    from crystaljax.oracles.qe.ld1 import ld1_input_element

    if ld1_input_element(alternative) != element:
        raise ValueError(f"{alternative!r} is not an ld1.x input for {element}")
    sets = {"default": presets.PSLIBRARY_INPUTS[element], "alternative": alternative}
    path = Path(out)
    rows = json.loads(path.read_text()) if path.is_file() else []
    new = []
    for label, make in CRYSTALS[element]:
        if only and not any(s in label for s in only):
            continue
        structure = make()
        for prop in properties:
            for role, ld1_input in sets.items():
                preset = uniform_preset(ecutwfc, sets={element: ld1_input})
                results, seconds = evaluate(prop, [structure], None, preset=preset)
                result = results[0]
                row = {"crystal": label, "element": element, "set": role,
                       "ld1_input": ld1_input, "ecutwfc": ecutwfc, "property": prop,
                       "value": result.value, "status": Status(result.status).name,
                       "reason": result.reason,
                       "pressures_gpa": result.extra.get("pressures"),
                       "magnetization": result.extra.get("magnetization"),
                       "seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d")}
                print(json.dumps(row), flush=True)
                rows.append(row)
                new.append(row)
                path.write_text(json.dumps(rows, indent=1) + "\n")
    return new


def table(rows: Sequence[dict]) -> str:
    """Markdown: per crystal, property, cutoff and alternative set, the two sets' values and
    their difference (of repeated runs, the last)."""
    defaults: dict[tuple, dict] = {}
    alternatives: dict[tuple, dict] = {}
    for row in rows:
        key = (row["crystal"], row["property"], row.get("ecutwfc"))
        if row["set"] == "default":
            defaults[key] = row
        else:
            alternatives[(*key, row.get("ld1_input"))] = row
    lines = ["| crystal | property | Ry | default set | alternative | difference | "
             "pressures (GPa; default / alternative) |", "|---|---|---|---|---|---|---|"]

    def fmt(row):
        return f"{row['value']:.3f}" if row["status"] == "OK" else row["status"]

    for (crystal, prop, ecut, _input), second in alternatives.items():
        first = defaults.get((crystal, prop, ecut))
        if first is None:
            continue
        diff = ""
        if first["status"] == second["status"] == "OK":
            delta = first["value"] - second["value"]
            diff = f"{delta:+.3f}" + (f" ({100 * delta / second['value']:+.1f} %)"
                                      if prop == "bulk_modulus" and second["value"] else "")
        pressures = " / ".join(
            ", ".join(f"{p:.1f}" for p in row["pressures_gpa"]) if row["pressures_gpa"]
            else "-" for row in (first, second))
        ry = "" if ecut is None else f"{ecut:g}"
        lines.append(f"| {crystal} | {prop} | {ry} | {fmt(first)} | {fmt(second)} | {diff} | "
                     f"{pressures if prop == 'bulk_modulus' else ''} |")
    return "\n".join(lines)


__all__ = ["CRYSTALS", "MG_CRYSTALS", "O_CRYSTALS", "compare", "table", "uniform_preset"]
