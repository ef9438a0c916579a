"""Plane-wave cutoff convergence of the pseudopotentials (scripts/converge_cutoffs.py) and its
summary (scripts/cutoff_table.py).

For every element, a one-atom fcc cell (nearest-neighbour distance ``max(2 r_atomic, 2.2 Å)``;
the pseudopotential's hardness, not the crystal, sets the convergence) is computed with pw.x
at a ladder of ``ecutwfc`` values (``ecutrho = 4 ecutwfc`` for the norm-conserving GTH family,
``8 ecutwfc`` for the PAW family of pslibrary inputs), a Gamma-centred
6x6x6 k-grid and Marzari-Vanderbilt smearing 0.02 Ry. Recorded per cutoff: total energy per
atom, pressure and wall time. The chosen cutoff is the lowest ladder value whose energy and
pressure (and those of every ladder value above it) are within both tolerances of a run at a
cutoff at least 1.5 times higher; an element's scan stops once that is established.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from crystaljax.benchmarks.dft import fcc_lattice
from crystaljax.elements import LARGE

#: the elements whose cutoffs are converged: the large vocabulary
LARGE_VOCABULARY = list(LARGE)
LADDER = (30, 40, 50, 60, 80, 100, 120, 160, 200, 250, 300)
#: the ladder of the soft PAW family (pslibrary inputs; ``ecutrho`` = 8 ``ecutwfc``)
PAW_LADDER = (25, 30, 35, 40, 45, 50, 60, 70, 80, 100, 120, 150)

#: family name -> (``ecutrho`` / ``ecutwfc``, default ladder)
FAMILIES = {"gth": (4.0, LADDER), "pslibrary": (8.0, PAW_LADDER)}


def family_inputs(family: str, rule: str = "property") -> dict[str, str]:
    """The ld1.x inputs of ``family`` (``gth``: Na only; ``pslibrary``: every element, the
    ``default`` preset's sets, or with the energy rule, whose table is the ``fast``
    preset's, that preset's: the semicore Mg)."""
    from crystaljax.oracles.qe.presets import (
        LD1_INPUTS,
        PSLIBRARY_INPUTS,
        PSLIBRARY_SUGGESTED_INPUTS,
    )

    if family != "pslibrary":
        return dict(LD1_INPUTS)
    return dict(PSLIBRARY_SUGGESTED_INPUTS if rule == "energy" else PSLIBRARY_INPUTS)


def fcc_cell(element: str):
    """One-atom fcc primitive cell with nn distance max(2 r_atomic, 2.2 Å)."""
    from pymatgen.core import Element, Structure

    radius = Element(element).atomic_radius or 1.5
    return Structure(fcc_lattice(max(2.0 * float(radius), 2.2) * 2**0.5), [element], [[0, 0, 0]])


def element_family(element: str, ladder, family_dir: Path, generated: dict[str, str], dual: float,
                   partners: Sequence[str] = ()):
    """The pseudopotential family holding ``element``'s set (ld1.x for the elements of
    ``generated``, else its ``GTH_VARIANTS`` entry), and those of ``partners`` (a compound
    probe's other elements), at the ladder's top cutoff."""
    from crystaljax.oracles.qe.family import write_gth_family
    from crystaljax.oracles.qe.presets import GTH_VARIANTS

    top = (max(ladder), dual * max(ladder))
    return write_gth_family(family_dir, {e: top for e in (element, *partners)},
                            variants=GTH_VARIANTS, generated=generated)


def run_cell(structure, settings, family, runner, label: str):
    """One pw.x run: ``(status name, reason, parsed output, seconds)``; the scratch of a
    successful run is removed."""
    from crystaljax.oracles.qe.inputs import write_pw_input
    from crystaljax.oracles.qe.parse import classify, parse_output
    from crystaljax.oracles.qe.runner import run_pw

    run = run_pw(write_pw_input(structure, settings, family), runner, label=label)
    parsed = parse_output(run.output)
    status, reason = classify(run, parsed)
    if status.name == "OK":
        run.cleanup()
    return status.name, reason, parsed, run.seconds


def scan_element(element: str, ladder, family_dir: Path, runner, tol_mev: float, tol_gpa: float,
                 generated: dict[str, str] | None = None, dual: float = 4.0) -> dict:
    """Energy, pressure and time of ``element``'s fcc cell up the cutoff ladder.

    The pseudopotential is the default preset's (ld1.x for the elements of ``generated``,
    default ``LD1_INPUTS``; else the ``GTH_VARIANTS`` entry), with ``ecutrho = dual ecutwfc``.
    The scan stops as soon as a cutoff is confirmed by a run at >= 1.5 times that cutoff
    (:func:`choose_cutoff`).
    """
    from crystaljax.oracles.qe.inputs import PwSettings
    from crystaljax.oracles.qe.presets import LD1_INPUTS, pseudo_variant

    generated = LD1_INPUTS if generated is None else generated
    family = element_family(element, ladder, family_dir, generated, dual)
    structure = fcc_cell(element)
    rows: list[dict] = []
    for ecut in ladder:
        settings = PwSettings(ecutwfc=float(ecut), ecutrho=dual * ecut, occupations="smearing",
                              smearing="mv", degauss=0.02, kgrid=(6, 6, 6),
                              conv_thr_per_atom=1e-8, spin="off")  # as the recorded scans
        status, reason, parsed, seconds = run_cell(structure, settings, family, runner,
                                                   f"conv-{element}-{ecut}")
        rows.append({"ecutwfc": ecut, "status": status, "reason": reason,
                     "energy_ev_per_atom": parsed.energy_per_atom,
                     "pressure_gpa": parsed.pressure, "seconds": round(seconds, 2)})
        if choose_cutoff(rows, tol_mev, tol_gpa) is not None:
            break
    return {"element": element, "variant": pseudo_variant(element, generated),
            "z_valence": family.spec(element).z_valence,
            "fcc_a": round(structure.lattice.a * 2**0.5, 4), "rows": rows}


def _deviations(row: dict, ref: dict) -> tuple[float, float]:
    """|dE| (meV/atom) and |dP| (GPa) of ``row`` against ``ref``."""
    return (abs(row["energy_ev_per_atom"] - ref["energy_ev_per_atom"]) * 1000.0,
            abs(row["pressure_gpa"] - ref["pressure_gpa"]))


def choose_cutoff(rows: list[dict], tol_mev: float, tol_gpa: float) -> int | None:
    """Lowest cutoff c whose energy and pressure, and those of every cutoff between c and the
    last one, are within the tolerances of the last (highest) run, provided the last cutoff
    is >= 1.5 c. ``None`` if no cutoff qualifies."""
    if not rows or rows[-1]["status"] != "OK":
        return None
    ref = rows[-1]
    chosen = None
    for r in reversed(rows[:-1]):
        if r["status"] != "OK":
            break
        de, dp = _deviations(r, ref)
        if de > tol_mev or dp > tol_gpa:
            break
        if ref["ecutwfc"] >= 1.5 * r["ecutwfc"]:
            chosen = r["ecutwfc"]
    return chosen


def recommend_cutoff(rows: list[dict], tol_mev: float, tol_gpa: float,
                     relaxed: tuple[float, float] = (25.0, 2.0)) -> tuple[int, str]:
    """The cutoff for the preset and the rule that gave it. ``strict``: :func:`choose_cutoff`;
    ``relaxed``: where no value is confirmed by a run 1.5 times higher, the lowest value within
    the relaxed tolerances (meV/atom, GPa) of the top run; ``top``: the top of the ladder."""
    chosen = choose_cutoff(rows, tol_mev, tol_gpa)
    if chosen is not None:
        return chosen, "strict"
    ok = [r for r in rows if r["status"] == "OK"]
    ref = ok[-1]
    best = ref["ecutwfc"]
    for r in reversed(ok[:-1]):
        de, dp = _deviations(r, ref)
        if de > relaxed[0] or dp > relaxed[1]:
            break
        best = r["ecutwfc"]
    return best, ("relaxed" if best != ref["ecutwfc"] else "top")


def converge(out: str, elements: Sequence[str] = LARGE_VOCABULARY, ladder=None,
             family_dir: str = "/tmp/crystaljax-conv-pseudos", tol_mev: float = 5.0,
             tol_gpa: float = 0.5, time_limit: float = 600.0, pw_command: str = "pw.x",
             gth: bool = False, redo: bool = False, family: str = "gth",
             rule: str = "energy", probe: str = "contact") -> dict:
    """Scan ``elements`` into ``out`` (rewritten after each; elements already there are
    skipped unless ``redo``). ``family``: ``gth`` (the ``gth`` preset's: cp2k GTH, Na from
    ld1.x) or ``pslibrary`` (the ``default`` preset's PAW sets); ``ladder`` defaults to the
    family's. ``gth``: scan the GTH entries of the ld1.x elements instead (stored under
    ``gth_alternatives``). ``rule``: ``energy`` (this module's) or ``property``
    (:mod:`crystaljax.benchmarks.cutoff_properties`: three cells per cutoff, converged on
    the stress, E(V) and the bands, per property). ``probe`` (property rule only):
    ``contact`` or ``equilibrium`` (:data:`~crystaljax.benchmarks.cutoff_properties.PROBES`)."""
    from crystaljax.benchmarks import cutoff_properties as props
    from crystaljax.oracles.qe.runner import RunnerConfig

    if rule not in ("energy", "property"):
        raise ValueError(f"rule must be 'energy' or 'property', got {rule!r}")
    if probe != "contact" and rule != "property":
        raise ValueError(f"probe {probe!r} needs rule 'property' (the energy rule's cell is "
                         "the contact cell)")

    dual, default_ladder = FAMILIES[family]
    ladder = tuple(ladder or default_ladder)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {"elements": {}}
    data["method"] = {
        "cell": "1-atom fcc primitive, nn distance max(2 r_atomic, 2.2 A)", "kgrid": "6x6x6 Gamma",
        "smearing": "mv 0.02 Ry", "ecutrho": f"{dual:g} x ecutwfc", "ladder_ry": list(ladder),
        "family": family,
        "tol_mev_per_atom": tol_mev, "tol_gpa": tol_gpa,
        "criterion": "within tolerances of a run at >= 1.5x the cutoff",
    }
    if rule == "property":
        for key in ("tol_mev_per_atom", "tol_gpa"):
            del data["method"][key]
        if probe == "equilibrium":
            data["method"]["cell"] = (f"1-atom fcc primitive at its E(V) minimum at "
                                      f"{props.EQUILIBRIUM_ECUT:g} Ry")
        elif probe == "oxide":
            data["method"]["cell"] = (f"rock-salt oxide MO (2-atom primitive) at its E(V) "
                                      f"minimum at {props.EQUILIBRIUM_ECUT:g} Ry")
        data["method"].update(rule="property", tolerances=props.PROPERTY_TOLERANCES,
                              strain=props.PROPERTY_STRAIN, energy_strain=props.ENERGY_STRAIN,
                              rules=props.PROPERTY_RULES, band_window_ev=props.BAND_WINDOW_EV,
                              conv_thr_per_atom=1e-9, diago_full_acc=True)
    runner = RunnerConfig(pw_command=pw_command, time_limit=time_limit)
    section = data.setdefault("gth_alternatives", {}) if gth else data["elements"]
    for element in elements:
        if element in section and not redo:
            continue
        t0 = time.time()
        generated = {} if gth else family_inputs(family, rule)
        if rule == "property":
            result = props.scan_element_properties(element, ladder, Path(family_dir), runner,
                                                   generated, dual, probe=probe)
            _record_property_choice(result)
        else:
            result = scan_element(element, ladder, Path(family_dir), runner, tol_mev, tol_gpa,
                                  generated=generated, dual=dual)
            result["chosen_ecutwfc"] = choose_cutoff(result["rows"], tol_mev, tol_gpa)
            result["preset_ecutwfc"], result["rule"] = recommend_cutoff(result["rows"], tol_mev,
                                                                        tol_gpa)
        section[element] = result
        path.write_text(json.dumps(data, indent=1))
        print(f"{element}: chosen {result['chosen_ecutwfc']} Ry ({time.time() - t0:.0f} s)",
              flush=True)
    return data


def _record_property_choice(result: dict) -> None:
    """Write the full property rule's choice into an element's scan result."""
    from crystaljax.benchmarks import cutoff_properties as props

    result["chosen_ecutwfc"] = props.choose_property_cutoff(result["rows"])
    result["preset_ecutwfc"], result["rule"] = (
        props.recommend_property_cutoff(result["rows"]) if result["rows"] else (None, "no probe"))


def add_energy_cells(out: str, elements: Sequence[str] | None = None,
                     family_dir: str = "/tmp/crystaljax-conv-pseudos", time_limit: float = 600.0,
                     pw_command: str = "pw.x", family: str | None = None) -> dict:
    """Add the third cell (``energy_v2``,
    :func:`~crystaljax.benchmarks.cutoff_properties.add_energy_cell`) to the rows of a
    property-rule file ``out`` recorded without it (``elements``: default all of the
    file's), and continue a scan up the family's ladder where a per-property rule finds no
    cutoff below its last one (:func:`~crystaljax.benchmarks.cutoff_properties.extend_scan`),
    rewriting the file after each element and updating its ``method``. The family and the
    ladder are the file's (``method.family``, ``method.ladder_ry``); ``family``, if given,
    must be the same (ValueError otherwise)."""
    from crystaljax.benchmarks import cutoff_properties as props
    from crystaljax.oracles.qe.runner import RunnerConfig

    path = Path(out)
    data = json.loads(path.read_text())
    if data.get("method", {}).get("rule") != "property":
        raise ValueError(f"{out} is not a property-rule scan (its method.rule is not 'property')")
    unknown = sorted(set(elements or ()) - set(data["elements"]))
    if unknown:
        raise ValueError(f"{out} has no scan of {unknown}")
    recorded = data["method"].get("family")
    if recorded not in FAMILIES or (family is not None and family != recorded):
        raise ValueError(f"{out} was scanned with family {recorded!r}; asked for {family!r}")
    family = recorded
    ladder = tuple(data["method"].get("ladder_ry") or FAMILIES[family][1])
    dual = FAMILIES[family][0]
    data["method"].update(energy_strain=props.ENERGY_STRAIN, rules=props.PROPERTY_RULES)
    runner = RunnerConfig(pw_command=pw_command, time_limit=time_limit)
    for element in elements or list(data["elements"]):
        t0 = time.time()
        record = data["elements"][element]
        runs = props.add_energy_cell(record, Path(family_dir), runner, family_inputs(family),
                                     dual)
        added = props.extend_scan(record, ladder, Path(family_dir), runner,
                                  family_inputs(family), dual)
        _record_property_choice(record)
        path.write_text(json.dumps(data, indent=1))
        print(f"{element}: {runs} V2 runs, {added} cutoffs added ({time.time() - t0:.0f} s)",
              flush=True)
    return data


def _table(elements: dict, tol_mev: float, tol_gpa: float) -> tuple[list[str], dict]:
    """One Markdown row per element, and element -> recommended cutoff."""
    lines, chosen = [], {}
    for el, v in elements.items():
        rows = v["rows"]
        cut, rule = recommend_cutoff(rows, tol_mev, tol_gpa)
        chosen[el] = cut
        ref, row = rows[-1], next(r for r in rows if r["ecutwfc"] == cut)
        de = 1000 * (row["energy_ev_per_atom"] - ref["energy_ev_per_atom"])
        dp = row["pressure_gpa"] - ref["pressure_gpa"]
        lines.append(f"| {el} | {v['variant']} | {cut} | {rule} | {de:+.1f} | {dp:+.2f} | "
                     f"{ref['ecutwfc']} | {row['seconds']} |")
    return lines, chosen


def _property_table(elements: dict) -> tuple[list[str], dict]:
    """One Markdown row per element of a property-rule file, and element -> cutoff."""
    from crystaljax.benchmarks import cutoff_properties as props
    from crystaljax.oracles.qe.presets import PAW_ECUTWFC_ENERGY as ENERGY_RULE

    lines, chosen = [], {}
    for el, v in elements.items():
        rows = v["rows"]
        if not rows:  # an equilibrium probe without an E(V) minimum
            lines.append(f"| {el} | {v['variant'].split('/')[-1].split('-kjpaw')[0]} | - | "
                         f"{ENERGY_RULE.get(el, '-')} | {v.get('probe_error', 'no rows')} "
                         "| | | | | |")
            continue
        cut, rule = props.recommend_property_cutoff(rows)
        chosen[el] = cut
        ref, row = rows[-1], next(r for r in rows if r["ecutwfc"] == cut)
        dev = props.property_deviations(row, ref)
        lines.append(f"| {el} | {v['variant'].split('/')[-1].split('-kjpaw')[0]} | {cut} | "
                     f"{ENERGY_RULE.get(el, '-')} | {rule} | {100 * dev['volume']:.2f} | "
                     f"{100 * dev['bulk_modulus']:.2f} | {dev['bands_mev']:.1f} | "
                     f"{ref['ecutwfc']} | {row['seconds']} |")
    return lines, chosen


def _per_property(elements: dict) -> dict[str, dict]:
    """property -> element -> cutoff (Ry) by that property's rule
    (:data:`~crystaljax.benchmarks.cutoff_properties.PROPERTY_RULES`); an element whose
    rows confirm nothing for a rule gets its highest OK cutoff (``top``)."""
    from crystaljax.benchmarks import cutoff_properties as props

    return {prop: {el: props.recommend_property_cutoff(v["rows"], rule)[0]
                   for el, v in elements.items() if v["rows"]}
            for prop, rule in props.PROPERTY_RULES.items()}


def summary(paths: Sequence[str]) -> str:
    """The Markdown table of cutoff-convergence files and the preset's cutoff dicts."""
    first = json.loads(Path(paths[0]).read_text()) if paths else {}
    if first.get("method", {}).get("rule") == "property":
        elements = {}
        for path in paths:
            elements.update(json.loads(Path(path).read_text())["elements"])
        rows, chosen = _property_table(elements)
        return "\n".join([
            "| element | pseudopotential | ecutwfc (Ry) | energy rule (Ry) | rule | volume error "
            "(%) | bulk modulus error (%) | bands (meV) | vs (Ry) | s per pair at chosen |",
            "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
            f"PAW_ECUTWFC = {json.dumps(chosen)}", "",
            f"PAW_ECUTWFC_BY_PROPERTY = {json.dumps(_per_property(elements))}"])
    elements: dict = {}
    alternatives: dict = {}
    method: dict = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        method = data.get("method", method)
        elements.update(data["elements"])
        alternatives.update(data.get("gth_alternatives", {}))
    tol = method.get("tol_mev_per_atom", 5.0), method.get("tol_gpa", 0.5)
    rows, chosen = _table(elements, *tol)
    lines = ["| element | pseudopotential | ecutwfc (Ry) | rule | dE at chosen (meV/atom) |"
             " dP at chosen (GPa) | vs top (Ry) | s per run at chosen |",
             "|---|---|---|---|---|---|---|---|", *rows]
    if alternatives:
        rows, _ = _table(alternatives, *tol)
        lines += ["", "GTH entries of the ld1.x elements (not used by a preset):", "", *rows]
    name = "PAW_ECUTWFC_ENERGY" if method.get("family") == "pslibrary" else "GTH_ECUTWFC"
    lines += ["", f"{name} = {json.dumps(chosen)}"]
    return "\n".join(lines)


__all__ = ["LADDER", "LARGE_VOCABULARY", "add_energy_cells", "choose_cutoff", "converge",
           "element_family", "fcc_cell", "recommend_cutoff", "run_cell", "scan_element",
           "summary"]
