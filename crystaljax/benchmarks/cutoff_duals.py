"""The density cutoff (``ecutrho``) of each element of the PAW family, measured per property.

The property-rule scans (:mod:`crystaljax.benchmarks.cutoff_properties`) choose ``ecutwfc``
with ``ecutrho`` = 8 ``ecutwfc`` (``PAW_DUAL``), pslibrary's safe ratio for augmentation
charges. The dense grid is a large part of a run's cost (MnSn on the CsCl template at 80 Ry:
dual 4 instead of 8 takes 0.83x the time), and how dense it must be depends on the element's
augmentation charges, not on its wavefunctions. So, per element and property, at the
element's chosen ``ecutwfc`` of that property's table, the same probe cells (V0, V1, V2) are
run with ``ecutrho`` = d x ``ecutwfc`` for each d of :data:`DUAL_LADDER`, highest first, and
compared with the scan's reference run (the top of its ladder, dual 8) by the property's own
rule (:data:`~crystaljax.benchmarks.cutoff_properties.PROPERTY_RULES`; the full rule for
``density``). The chosen dual is the lowest one that, with every dual above it, meets the
rule; 8 where none does. As for ``ecutwfc``, the rule's tolerance is shared: the dual-8 run
at the chosen ``ecutwfc`` already deviates somewhat from the reference, and a lower dual
must keep the total within it.

A crystal's ``ecutrho`` is then the maximum over its elements of dual x ``ecutwfc`` (and at
least 4x its ``ecutwfc``; :func:`~crystaljax.oracles.qe.inputs.plane_wave_cutoffs`): the
augmentation charge of each element gets the grid it was converged with.

What the ``default`` preset takes of it (``presets.PAW_DUAL_BY_PROPERTY``) was decided on
compounds (``scripts/compound_cutoffs.py``, docs/PSEUDOPOTENTIALS.md): the density and
band-gap choices, but dual 8 for the transition metals (``presets.PAW_DUAL_KEPT``: rock-salt MnO's
density 3.4 % low, its bands 33 meV off at the elemental choices; not Ti and Zn, whose oxides'
dual scans allow their elemental choices: ``presets.PAW_DUAL_OXIDE_MEASURED``) and for the
bulk modulus (its template-volume scan is more sensitive than the probe's three cells: KCl
+2.4 %, LiF -2.9 %, MnO 27 instead of 116 GPa at the elemental choices with the E(V)
scan), whose dual 4 is taken only by the elements its compounds allow
(:func:`compound_bulk_modulus_duals`, ``presets.PAW_BULK_MODULUS_DUAL_MEASURED``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from crystaljax.benchmarks.cutoff_properties import (
    PROPERTY_RULES,
    PROPERTY_TOLERANCES,
    _record_family,
    _recorded_probe,
    probe_cells,
    property_deviations,
    property_row,
    scan_settings,
    within,
)

#: the ``ecutrho`` / ``ecutwfc`` ratios tried below the scans' dual, highest first
DUAL_LADDER = (6.0, 5.0, 4.0)
#: the dual of the recorded property-rule scans (``presets.PAW_DUAL``)
SCAN_DUAL = 8.0


def rule_of(property_name: str) -> dict[str, float]:
    """The tolerances ``property_name``'s cutoffs are converged on (the full rule for a
    property without its own, i.e. ``density``)."""
    return PROPERTY_RULES.get(property_name, PROPERTY_TOLERANCES)


def scan_element_duals(record: dict, tables: Mapping[str, Mapping[str, float]],
                       family_dir: Path, runner, generated: dict[str, str],
                       duals: Sequence[float] = DUAL_LADDER) -> dict:
    """The lowest dual per property for one element.

    Args:
      record: the element's property-rule scan (one entry of a ``--rule property`` file;
        its last row, at dual :data:`SCAN_DUAL`, is the reference).
      tables: property -> element -> ``ecutwfc`` (Ry) the duals are measured at.
      family_dir, runner, generated: as :func:`~crystaljax.benchmarks.cutoff_properties.
        scan_element_properties`.
      duals: the ratios tried, highest first (each below :data:`SCAN_DUAL`).

    Returns:
      ``{"element", "reference_ecutwfc", "choices": {property: {"ecutwfc", "dual",
      "deviations"}}, "rows": [...]}``: each row a
      :func:`~crystaljax.benchmarks.cutoff_properties.property_row` with its ``dual``;
      ``deviations`` are the chosen dual's against the reference (the dual-8 row's where
      no lower dual holds). Rows are shared between properties of equal ``ecutwfc``.
    """
    if list(duals) != sorted(duals, reverse=True) or max(duals) >= SCAN_DUAL:
        raise ValueError(f"duals must descend and stay below {SCAN_DUAL:g}, got {list(duals)}")
    element = record["element"]
    recorded = [r for r in record["rows"] if r["status"] == "OK"]
    if not recorded or record["rows"][-1]["status"] != "OK":
        raise ValueError(f"{element}: the recorded scan has no reference run")
    ref = record["rows"][-1]
    at_scan_dual = {}
    for prop, table in tables.items():
        ecut = float(table[element])
        at_scan_dual[prop] = next((r for r in recorded if r["ecutwfc"] == ecut), None)
        if at_scan_dual[prop] is None:
            raise ValueError(f"{element}: no recorded run at {ecut:g} Ry ({prop})")
    ladder = [r["ecutwfc"] for r in record["rows"]]
    family = _record_family(record, ladder, family_dir, generated, SCAN_DUAL)
    cells = probe_cells(_recorded_probe(record, ref["volume_v0"]))
    rows: dict[tuple[float, float], dict] = {}
    choices: dict[str, dict] = {}
    for prop, table in tables.items():
        ecut = float(table[element])
        rule = rule_of(prop)
        chosen, deviations = SCAN_DUAL, property_deviations(at_scan_dual[prop], ref)
        for dual in duals:
            if (ecut, dual) not in rows:
                row = property_row(ecut, cells, scan_settings(ecut, dual), family, runner,
                                   f"{element}-d{dual:g}")
                rows[(ecut, dual)] = {**row, "dual": dual}
            row = rows[(ecut, dual)]
            if row["status"] != "OK":
                break
            found = property_deviations(row, ref)
            if not within(found, rule):
                break
            chosen, deviations = dual, found
        choices[prop] = {"ecutwfc": ecut, "dual": chosen,
                         "deviations": {k: round(deviations[k], 5) for k in rule}}
    return {"element": element, "reference_ecutwfc": ref["ecutwfc"], "choices": choices,
            "rows": list(rows.values())}


def converge_duals(scans: str, out: str, tables: Mapping[str, Mapping[str, float]],
                   elements: Sequence[str] | None = None,
                   family_dir: str = "/tmp/crystaljax-conv-pseudos",
                   time_limit: float = 600.0, pw_command: str = "pw.x",
                   redo: bool = False) -> dict:
    """Measure the duals of ``elements`` (default: all of ``scans``) into ``out``
    (rewritten after each element; elements already there are skipped unless ``redo``).
    ``scans``: a pslibrary property-rule file; ``tables``: property -> element ->
    ``ecutwfc`` (the preset's tables)."""
    from crystaljax.benchmarks.cutoffs import family_inputs
    from crystaljax.oracles.qe.runner import RunnerConfig

    source = json.loads(Path(scans).read_text())
    method = source.get("method", {})
    if method.get("rule") != "property" or method.get("family") != "pslibrary":
        raise ValueError(f"{scans} is not a pslibrary property-rule scan")
    unknown = sorted(set(elements or ()) - set(source["elements"]))
    if unknown:
        raise ValueError(f"{scans} has no scan of {unknown}")
    path = Path(out)
    data = json.loads(path.read_text()) if path.exists() else {"elements": {}}
    data["method"] = {
        "scans": scans, "cells": method.get("cell"), "duals_tried": list(DUAL_LADDER),
        "scan_dual": SCAN_DUAL, "rules": {p: rule_of(p) for p in tables},
        "criterion": "lowest dual that, with every dual above it, meets the property's rule "
                     "against the scan's reference (top of its ladder, dual 8)",
    }
    runner = RunnerConfig(pw_command=pw_command, time_limit=time_limit)
    for element in elements or list(source["elements"]):
        if element in data["elements"] and not redo:
            continue
        record = source["elements"][element]
        if not record.get("rows"):
            continue
        t0 = time.time()
        result = scan_element_duals(record, tables, Path(family_dir), runner,
                                    family_inputs("pslibrary"))
        result["seconds"] = round(time.time() - t0, 1)
        data["elements"][element] = result
        path.write_text(json.dumps(data, indent=1))
        print(f"{element}: " + ", ".join(f"{p} {c['dual']:g}" for p, c in
                                          result["choices"].items())
              + f" ({result['seconds']:.0f} s)", flush=True)
    return data


def dual_tables(paths: Sequence[str]) -> dict[str, dict[str, float]]:
    """property -> element -> chosen dual, from dual-scan files (later files win)."""
    out: dict[str, dict[str, float]] = {}
    for path in paths:
        for element, result in json.loads(Path(path).read_text())["elements"].items():
            for prop, choice in result["choices"].items():
                out.setdefault(prop, {})[element] = choice["dual"]
    return out


def is_dual_scan(data: dict) -> bool:
    """Whether a loaded JSON file is a dual scan (:func:`converge_duals`)."""
    return "duals_tried" in data.get("method", {})


def summary(paths: Sequence[str]) -> str:
    """Markdown table of dual-scan files (one row per element: ``ecutwfc`` and the chosen
    dual per property, the seconds of the three cells at the density's dual) and the
    measured duals per property (``DUALS_MEASURED``: ``presets.PAW_DUAL_BY_PROPERTY`` takes
    those of the density and band gap, but for ``presets.PAW_DUAL_KEPT``)."""
    elements: dict = {}
    for path in paths:
        elements.update(json.loads(Path(path).read_text())["elements"])
    props = sorted({p for r in elements.values() for p in r["choices"]})
    lines = ["| element | " + " | ".join(f"{p}: ecutwfc (Ry), dual" for p in props)
             + " | s, 3 cells at the density dual |", "|---|" + "---|" * (len(props) + 1)]
    for element, result in elements.items():
        cells = [f"{c['ecutwfc']:g}, {c['dual']:g}" for c in
                 (result["choices"][p] for p in props)]
        density = result["choices"].get("density")
        timing = ""
        if density is not None:
            row = next((r for r in result["rows"] if r["ecutwfc"] == density["ecutwfc"]
                        and r["dual"] == density["dual"]), None)
            if row is not None:
                timing = f"{row['seconds']:g}"
        lines.append(f"| {element} | " + " | ".join(cells) + f" | {timing} |")
    tables = dual_tables(paths)
    return "\n".join([*lines, "", f"DUALS_MEASURED = {json.dumps(tables)}"])


def compound_bulk_modulus_duals(rows: Sequence[dict], dual: float = 4.0,
                                min_compounds: int = 2, tolerance: float | None = None,
                                pseudos: Mapping[str, str] | None = None
                                ) -> dict[str, dict]:
    """Which elements may take ``dual`` for the bulk modulus, from rock-salt compounds.

    ``rows``: ``scripts/compound_cutoffs.py``'s rows (benchmarks/compound_cutoffs.json). Per
    crystal, its pressure-scan bulk modulus (rows with ``pressures_gpa``) at ``ecutrho`` =
    :data:`SCAN_DUAL` x ``ecutwfc`` is compared with the uniform row at the same ``ecutwfc``
    and ``ecutrho`` = ``dual`` x ``ecutwfc`` (every element at ``dual``: the coarsest grid a
    crystal of elements at ``dual`` gets). An element passes when it is in at least
    ``min_compounds`` such crystals and every one is within ``tolerance`` (default: the
    bulk-modulus rule's 2 %, :data:`PROPERTY_RULES`). A crystal with several such pairs (other
    lattice constants or cutoffs) counts with its largest deviation. A crystal with no row at
    :data:`SCAN_DUAL` is not counted: since the preset's own bulk-modulus duals are partly 4,
    record one with ``scripts/compound_cutoffs.py X Y a --ecut E --dual 8`` next to
    ``--dual 4``. ``pseudos`` (element -> ``presets.pseudo_variant``, e.g. a preset's
    family): count only rows that record the same pseudopotentials for their elements (rows
    record them as ``pseudos``), so a changed pseudopotential needs its compounds measured
    again.

    Returns element -> ``{"compounds": {crystal: relative deviation}, "passes": bool}``."""
    from pymatgen.core import Composition

    if tolerance is None:
        tolerance = PROPERTY_RULES["bulk_modulus"]["bulk_modulus"]
    def same_pseudos(row: dict) -> bool:
        recorded = row.get("pseudos")
        return pseudos is None or (isinstance(recorded, Mapping) and bool(recorded) and all(
            pseudos.get(element) == variant for element, variant in recorded.items()))

    scans = [r for r in rows if r.get("property") == "bulk_modulus" and r.get("status") == "OK"
             and r.get("pressures_gpa") and r.get("ecutwfc") and r.get("ecutrho")
             and same_pseudos(r)]
    deviations: dict[str, dict[str, float]] = {}
    for coarse in scans:
        if coarse.get("cutoff_table") != "uniform" or \
                abs(coarse["ecutrho"] - dual * coarse["ecutwfc"]) > 1e-6:
            continue
        reference = [r for r in scans if r["crystal"] == coarse["crystal"]
                     and r["a"] == coarse["a"] and r["ecutwfc"] == coarse["ecutwfc"]
                     and abs(r["ecutrho"] - SCAN_DUAL * r["ecutwfc"]) < 1e-6]
        if not reference:
            continue
        deviation = coarse["value"] / reference[-1]["value"] - 1.0
        for element in Composition(coarse["crystal"]).elements:
            found = deviations.setdefault(element.symbol, {})
            if abs(deviation) >= abs(found.get(coarse["crystal"], 0.0)):
                found[coarse["crystal"]] = deviation
    return {element: {"compounds": found,
                      "passes": len(found) >= min_compounds
                      and all(abs(d) <= tolerance for d in found.values())}
            for element, found in sorted(deviations.items())}


__all__ = ["DUAL_LADDER", "SCAN_DUAL", "compound_bulk_modulus_duals", "converge_duals",
           "dual_tables", "is_dual_scan", "rule_of", "scan_element_duals", "summary"]
