"""Measure plane-wave cutoff convergence of the generated pseudopotentials (PAW or GTH).

One-atom fcc cells up a ladder of ``ecutwfc`` values; the chosen cutoff is the lowest one
within ``--tol-mev`` meV/atom and ``--tol-gpa`` GPa of a run at >= 1.5 times that cutoff
(method: ``crystaljax.benchmarks.cutoffs``). Results go to a JSON file (default
``benchmarks/cutoff_convergence_pslibrary.json``), rewritten after each element, so the scan can be
stopped and resumed. ``--family gth --gth`` scans the GTH entries of ld1.x elements.

Usage::

    python scripts/converge_cutoffs.py [--family pslibrary|gth] [--elements Si Na ...]
        [--rule energy|property] [--probe contact|equilibrium] [--out FILE] [--redo]

``--rule property`` (SSSP-like: what each property needs, three cells per cutoff) writes
``benchmarks/cutoff_convergence_pslibrary_properties.json`` by default (the contact probe),
``--rule property --probe equilibrium`` (each element's fcc E(V) minimum; the ``default``
preset's cutoffs) ``benchmarks/cutoff_convergence_pslibrary_equilibrium.json``.
``--rule property --add-energy-cell`` adds the bulk-modulus rule's third cell to the rows of
such a file recorded without it. ``--rule property --probe oxide`` scans the rock-salt oxides of
the 3d metals (``benchmarks/cutoff_convergence_pslibrary_oxides.json``: a check of the
elemental tables, and the cells of the oxides' dual scans). The energy rule's table is the
``fast`` preset's, whose Mg is the semicore set: ``--family pslibrary --rule energy`` scans
that family.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import cutoffs  # noqa: E402
from crystaljax.benchmarks.cutoff_properties import OXIDE_PROBE_ELEMENTS, PROBES  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", nargs="*", default=cutoffs.LARGE_VOCABULARY)
    parser.add_argument("--family", choices=sorted(cutoffs.FAMILIES), default=None,
                        help="pslibrary (default): the default preset's PAW sets; gth: the gth "
                             "preset's (with --add-energy-cell: the file's, checked)")
    parser.add_argument("--ladder", nargs="*", type=int, default=None,
                        help="ecutwfc values (Ry; default: the family's ladder)")
    parser.add_argument("--out", default=None, help="default: benchmarks/cutoff_convergence"
                        "_pslibrary.json (pslibrary) or benchmarks/cutoff_convergence.json (gth)")
    parser.add_argument("--family-dir", default="/tmp/crystaljax-conv-pseudos")
    parser.add_argument("--tol-mev", type=float, default=5.0)
    parser.add_argument("--tol-gpa", type=float, default=0.5)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--pw-command", default="pw.x", help="pw.x executable (or a wrapper)")
    parser.add_argument("--gth", action="store_true",
                        help="scan the GTH_VARIANTS entry of elements the default preset generates "
                             "with ld1.x (stored under 'gth_alternatives')")
    parser.add_argument("--rule", choices=("energy", "property"), default="energy",
                        help="energy: total energy and pressure of one cell; property: "
                             "pressure, its volume derivative, E(V) and the bands at three cells "
                             "(crystaljax.benchmarks.cutoff_properties)")
    parser.add_argument("--probe", choices=PROBES, default=None,
                        help="property rule's cell: equilibrium (the fcc cell at its own "
                             "E(V) minimum; the default preset's cutoffs), contact (nn = "
                             "max(2 r_atomic, 2.2 A); the 2026-12-03 scan) or oxide (the "
                             "rock-salt oxide at its E(V) minimum; by default the 3d metals, "
                             "into ..._oxides.json). Default: equilibrium with the property "
                             "rule")
    parser.add_argument("--redo", action="store_true",
                        help="rescan the listed elements even if the JSON file has them")
    parser.add_argument("--add-energy-cell", action="store_true",
                        help="complete a property-rule file recorded before 2026-12-05 (two "
                             "cells per cutoff) with the third cell of the bulk-modulus rule "
                             "(energy_v2), and continue its scans up the file's ladder where a "
                             "per-property rule confirms nothing, instead of scanning (the "
                             "file's family and ladder; --probe and --tol-* do not apply)")
    args = parser.parse_args(argv)
    if args.add_energy_cell:
        if args.rule != "property" or args.gth or args.redo or args.ladder:
            parser.error("--add-energy-cell takes --rule property and neither --gth, --redo "
                         "nor --ladder")
        out = args.out or "benchmarks/cutoff_convergence_pslibrary_equilibrium.json"
        elements = None if args.elements == cutoffs.LARGE_VOCABULARY else args.elements
        try:
            cutoffs.add_energy_cells(out, elements, args.family_dir, args.time_limit,
                                     args.pw_command, args.family)  # the file's ladder
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        return
    args.family = args.family or "pslibrary"
    if args.probe is None:
        args.probe = "equilibrium" if args.rule == "property" else "contact"
    elif args.probe != "contact" and args.rule != "property":
        parser.error(f"--probe {args.probe} needs --rule property (the energy rule's cell is "
                     "the contact cell)")
    suffix = "" if args.rule != "property" else {
        "equilibrium": "_equilibrium", "oxide": "_oxides"}.get(args.probe, "_properties")
    if args.probe == "oxide" and args.elements == cutoffs.LARGE_VOCABULARY:
        args.elements = list(OXIDE_PROBE_ELEMENTS)
    out = args.out or ("benchmarks/cutoff_convergence.json" if args.family == "gth" else
                       f"benchmarks/cutoff_convergence_pslibrary{suffix}.json")
    cutoffs.converge(out, args.elements, args.ladder, args.family_dir, args.tol_mev,
                     args.tol_gpa, args.time_limit, args.pw_command, args.gth, args.redo,
                     family=args.family, rule=args.rule, probe=args.probe)


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
