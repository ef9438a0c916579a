"""Measure plane-wave cutoff convergence of the generated GTH pseudopotentials.

For every element, a one-atom fcc cell (nearest-neighbour distance
``max(2 r_atomic, 2.2 Å)``; the pseudopotential's hardness, not the
crystal, sets the convergence) is computed with pw.x at a ladder of ``ecutwfc``
values (``ecutrho = 4 ecutwfc``, norm-conserving), a Gamma-centred 6x6x6
k-grid and Marzari-Vanderbilt smearing 0.02 Ry. The highest cutoff is the
reference. Recorded per cutoff: total energy per atom (meV/atom relative to
the reference), pressure (GPa relative to the reference), wall time.

The chosen cutoff is the lowest ladder value whose energy and pressure (and
those of every ladder value above it) are within both tolerances (``--tol-mev``
meV/atom, ``--tol-gpa`` GPa) of a run at a cutoff at least 1.5 times higher;
the scan of an element stops once that is established. Results go to a
JSON file (default ``benchmarks/cutoff_convergence.json``); a partial file is
rewritten after each element, so the scan can be stopped and resumed.

Usage::

    python scripts/converge_cutoffs.py [--elements Si Na ...] [--out FILE] [--redo]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pymatgen.core import Element, Lattice, Structure

from crystaljax.oracles.qe.inputs import PwSettings, write_pw_input
from crystaljax.oracles.qe.parse import classify, parse_output
from crystaljax.oracles.qe.presets import GTH_VARIANTS, LD1_INPUTS, pseudo_variant
from crystaljax.oracles.qe.pseudopotentials import write_gth_family
from crystaljax.oracles.qe.runner import RunnerConfig, run_pw

LARGE_VOCABULARY = (
    "Li Na K Rb Be Ca Mg Sr H C N O P S Se F Cl Br B Si Ge Fe Cu Co Ni Mn Al Zn Sn Cr "
    "In Sb V Mo Ga Ag Ti Ba Y Te I Pd Rh As Pt Cs Au Bi Zr La"
).split()
LADDER = (30, 40, 50, 60, 80, 100, 120, 160, 200, 250, 300)


def fcc_cell(element: str) -> Structure:
    """One-atom fcc primitive cell with nn distance max(2 r_atomic, 2.2 Å)."""
    radius = Element(element).atomic_radius or 1.5
    d = max(2.0 * float(radius), 2.2)
    a = d * 2**0.5
    lattice = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lattice, [element], [[0, 0, 0]])


def scan_element(
    element: str, ladder, family_dir: Path, runner: RunnerConfig, tol_mev: float, tol_gpa: float,
    generated: dict[str, str] | None = None,
) -> dict:
    """Energy, pressure and time of ``element``'s fcc cell up the cutoff ladder.

    The pseudopotential is the default preset's (ld1.x for the elements of
    ``generated``, default :data:`LD1_INPUTS`; else the :data:`GTH_VARIANTS` entry).
    The scan stops as soon as a cutoff is confirmed by a run at >= 1.5 times
    that cutoff (see :func:`choose_cutoff`), or at the top of the ladder.
    """
    generated = LD1_INPUTS if generated is None else generated
    family = write_gth_family(
        family_dir, {element: (max(ladder), 4 * max(ladder))}, variants=GTH_VARIANTS,
        generated=generated,
    )
    structure = fcc_cell(element)
    rows: list[dict] = []
    for ecut in ladder:
        settings = PwSettings(
            ecutwfc=float(ecut), ecutrho=4.0 * ecut, occupations="smearing", smearing="mv",
            degauss=0.02, kgrid=(6, 6, 6), conv_thr_per_atom=1e-8,
        )
        text = write_pw_input(structure, settings, family)
        run = run_pw(text, runner, label=f"conv-{element}-{ecut}")
        parsed = parse_output(run.output)
        status, reason = classify(run, parsed)
        rows.append({
            "ecutwfc": ecut, "status": status.name, "reason": reason,
            "energy_ev_per_atom": parsed.energy_per_atom, "pressure_gpa": parsed.pressure,
            "seconds": round(run.seconds, 2),
        })
        if status.name == "OK":
            run.cleanup()
        if choose_cutoff(rows, tol_mev, tol_gpa) is not None:
            break
    return {
        "element": element, "variant": pseudo_variant(element, generated),
        "z_valence": family.spec(element).z_valence,
        "fcc_a": round(structure.lattice.a * 2**0.5, 4), "rows": rows,
    }


def choose_cutoff(rows: list[dict], tol_mev: float, tol_gpa: float) -> int | None:
    """Lowest cutoff c whose energy and pressure, and those of every cutoff
    between c and the last one, are within the tolerances of the last (highest)
    run, provided the last cutoff is >= 1.5 c. ``None`` if no cutoff qualifies.
    """
    if not rows or rows[-1]["status"] != "OK":
        return None
    ref = rows[-1]
    chosen = None
    for r in reversed(rows[:-1]):
        if r["status"] != "OK":
            break
        de = abs(r["energy_ev_per_atom"] - ref["energy_ev_per_atom"]) * 1000.0
        dp = abs(r["pressure_gpa"] - ref["pressure_gpa"])
        if de > tol_mev or dp > tol_gpa:
            break
        if ref["ecutwfc"] >= 1.5 * r["ecutwfc"]:
            chosen = r["ecutwfc"]
    return chosen


def recommend_cutoff(
    rows: list[dict], tol_mev: float, tol_gpa: float, relaxed: tuple[float, float] = (25.0, 2.0)
) -> tuple[int, str]:
    """The cutoff for the preset and the rule that gave it.

    ``strict``: :func:`choose_cutoff`. ``relaxed``: where no ladder value is
    confirmed by a run 1.5 times higher, the lowest value within the relaxed
    tolerances (meV/atom, GPa) of the top run. ``top``: the top of the ladder.
    """
    chosen = choose_cutoff(rows, tol_mev, tol_gpa)
    if chosen is not None:
        return chosen, "strict"
    ok = [r for r in rows if r["status"] == "OK"]
    ref = ok[-1]
    best = ref["ecutwfc"]
    for r in reversed(ok[:-1]):
        de = abs(r["energy_ev_per_atom"] - ref["energy_ev_per_atom"]) * 1000.0
        if de > relaxed[0] or abs(r["pressure_gpa"] - ref["pressure_gpa"]) > relaxed[1]:
            break
        best = r["ecutwfc"]
    return best, ("relaxed" if best != ref["ecutwfc"] else "top")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", nargs="*", default=LARGE_VOCABULARY)
    parser.add_argument("--ladder", nargs="*", type=int, default=list(LADDER))
    parser.add_argument("--out", default="benchmarks/cutoff_convergence.json")
    parser.add_argument("--family-dir", default="/tmp/crystaljax-conv-pseudos")
    parser.add_argument("--tol-mev", type=float, default=5.0)
    parser.add_argument("--tol-gpa", type=float, default=0.5)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--pw-command", default="pw.x", help="pw.x executable (or a wrapper)")
    parser.add_argument("--gth", action="store_true",
                        help="scan the GTH_VARIANTS entry of elements the default preset generates "
                             "with ld1.x (stored under 'gth_alternatives'; used by FAST_GTH_FALLBACK)")
    parser.add_argument("--redo", action="store_true",
                        help="rescan the listed elements even if the JSON file has them")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {"elements": {}}
    data["method"] = {
        "cell": "1-atom fcc primitive, nn distance max(2 r_atomic, 2.2 A)", "kgrid": "6x6x6 Gamma",
        "smearing": "mv 0.02 Ry", "ecutrho": "4 x ecutwfc", "ladder_ry": args.ladder,
        "tol_mev_per_atom": args.tol_mev, "tol_gpa": args.tol_gpa,
        "criterion": "within tolerances of a run at >= 1.5x the cutoff",
    }
    runner = RunnerConfig(pw_command=args.pw_command, time_limit=args.time_limit)
    section = data.setdefault("gth_alternatives", {}) if args.gth else data["elements"]
    for element in args.elements:
        if element in section and not args.redo:
            continue
        t0 = time.time()
        result = scan_element(
            element, args.ladder, Path(args.family_dir), runner, args.tol_mev, args.tol_gpa,
            generated={} if args.gth else None,
        )
        result["chosen_ecutwfc"] = choose_cutoff(result["rows"], args.tol_mev, args.tol_gpa)
        result["preset_ecutwfc"], result["rule"] = recommend_cutoff(
            result["rows"], args.tol_mev, args.tol_gpa
        )
        section[element] = result
        out.write_text(json.dumps(data, indent=1))
        print(f"{element}: chosen {result['chosen_ecutwfc']} Ry ({time.time() - t0:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
