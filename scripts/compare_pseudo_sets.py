"""Compare two pseudopotential sets of one element on crystals of the RL templates.

The ``default`` family's set of ``--element`` against ``--alternative`` (an ld1.x input
under crystaljax/oracles/qe/ld1/), every element at one uniform cutoff, the ``default``
preset's recipes (method: ``crystaljax.benchmarks.pseudo_sets``). Appends JSON rows to
``--out`` and prints the Markdown table of docs/PSEUDOPOTENTIALS.md.

Usage::

    python scripts/compare_pseudo_sets.py --element Mg \\
        --alternative pslibrary_suggested/Mg.pbe-spnl-kjpaw_psl.1.0.0.in --ecut 80
    python scripts/compare_pseudo_sets.py --element O --ecut 70   # fast's O, pseudo_sets_o.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import pseudo_sets  # noqa: E402


def main(argv=None) -> None:
    from crystaljax.oracles.qe import presets
    from crystaljax.oracles.qe.ld1 import ld1_input_element, ld1_input_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--element", default="Mg", choices=sorted(pseudo_sets.CRYSTALS))
    parser.add_argument("--alternative", default=None,
                        help="ld1.x input of the other set, one of --element's (default: "
                             "the fast preset's, e.g. pslibrary_suggested/O.pbe-n-"
                             "kjpaw_psl.1.0.0.in)")
    parser.add_argument("--ecut", type=float, default=80.0,
                        help="uniform ecutwfc (Ry) for both sets; ecutrho 8x")
    parser.add_argument("--properties", nargs="+", default=["band_gap", "bulk_modulus"],
                        choices=("band_gap", "bulk_modulus", "density"))
    parser.add_argument("--only", nargs="*", default=None,
                        help="crystals whose label contains one of these strings")
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/pseudo_sets_<element>.json")
    parser.add_argument("--table-only", action="store_true",
                        help="print the table of --out, run nothing")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.ecut) and args.ecut > 0):
        parser.error("--ecut must be a positive number")
    if args.alternative is None:
        args.alternative = presets.PSLIBRARY_SUGGESTED_INPUTS[args.element]
    if args.out is None:
        args.out = f"benchmarks/pseudo_sets_{args.element.lower()}.json"
    if not ld1_input_path(args.alternative).is_file():
        parser.error(f"no ld1.x input {args.alternative!r}")
    if ld1_input_element(args.alternative) != args.element:
        parser.error(f"{args.alternative!r} is not an input for {args.element} "
                     "(the file name starts with the element)")
    out = Path(args.out)
    try:
        if out.is_file() and not isinstance(json.loads(out.read_text()), list):
            raise ValueError("not a list of rows")
    except ValueError as exc:  # json.JSONDecodeError is one
        parser.error(f"{out} is not a results file of this script: {exc}")
    if not args.table_only:
        pseudo_sets.compare(args.element, args.alternative, args.ecut, args.out,
                            args.properties, args.only)
    rows = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else []
    print(pseudo_sets.table([r for r in rows if r["element"] == args.element]))


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
