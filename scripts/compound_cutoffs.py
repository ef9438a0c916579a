"""Check the ``default`` preset's per-element cutoffs on a compound: one rock-salt crystal's
properties at the preset's cutoffs and at higher uniform ones, side by side.

The per-element cutoffs are converged on elemental fcc cells (docs/PSEUDOPOTENTIALS.md); a
compound's bonds can be shorter. This runs the same recipe (``default`` settings, 1 MPI rank)
with the preset's cutoffs and with every element at each ``--ecut`` value (``ecutrho`` =
``--dual`` x ``ecutwfc``, by default PAW_DUAL = 8), and appends one JSON row per run to
``--out``.

Usage::

    python scripts/compound_cutoffs.py Mn O 4.44 --ecut 80 100 120
    python scripts/compound_cutoffs.py K Cl 6.38 --properties band_gap bulk_modulus --ecut 100
    python scripts/compound_cutoffs.py Ti N 4.25 --ecut 50 --dual 4   # a coarser density grid
    python scripts/compound_cutoffs.py Ti N 4.25 --ecut 50 --dual 8   # its dual-8 reference
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from crystaljax.benchmarks.dft import rock_salt  # noqa: E402
from crystaljax.benchmarks.pseudo_sets import uniform_preset  # noqa: E402
from crystaljax.oracles.qe import presets  # noqa: E402


def main(argv=None) -> None:
    from crystaljax.benchmarks.validation import evaluate
    from crystaljax.oracles.base import Status

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cation")
    parser.add_argument("anion")
    parser.add_argument("a", type=float, help="rock-salt lattice constant (Å)")
    parser.add_argument("--ecut", type=float, nargs="*", default=[100.0],
                        help="uniform ecutwfc values (Ry) to compare with the preset's "
                             "(none: the preset's row only, e.g. against recorded ones)")
    parser.add_argument("--dual", type=float, default=presets.PAW_DUAL,
                        help="ecutrho / ecutwfc of the uniform rows (default: %(default)g)")
    parser.add_argument("--note", default="", help="what the preset's cutoffs are, recorded "
                        "in each row as cutoff_table (uniform rows say 'uniform')")
    parser.add_argument("--properties", nargs="+", default=["bulk_modulus"],
                        choices=("band_gap", "bulk_modulus", "density"))
    parser.add_argument("--out", default="benchmarks/compound_cutoffs.json")
    args = parser.parse_args(argv)
    known = presets.get_preset("default").cutoffs
    for element in (args.cation, args.anion):
        if element not in known:
            parser.error(f"unknown element {element!r}: the default preset covers "
                         f"{' '.join(known)}")
    if not all(math.isfinite(x) and x > 0 for x in (args.a, *args.ecut)):
        parser.error("the lattice constant and every --ecut must be positive numbers")
    if not (math.isfinite(args.dual) and args.dual >= 4):
        parser.error("--dual must be a number >= 4 (ecutrho >= 4 ecutwfc)")
    path = Path(args.out)
    rows = json.loads(path.read_text()) if path.is_file() else []
    if not isinstance(rows, list):
        parser.error(f"{path} is not a list of rows of this script")
    structure = rock_salt(args.cation, args.anion, args.a)
    for prop in args.properties:
        for preset in [presets.get_preset("default"),
                       *(uniform_preset(ecut, args.dual) for ecut in args.ecut)]:
            results, seconds = evaluate(prop, [structure], None, preset=preset)  # warm pool
            result = results[0]
            ecut, ecutrho = result.extra.get("cutoffs_ry") or (None, None)
            row = {"crystal": f"{args.cation}{args.anion}", "a": args.a, "property": prop,
                   "preset": preset.name, "ecutwfc": ecut, "ecutrho": ecutrho,
                   "value": result.value,
                   "status": Status(result.status).name, "reason": result.reason,
                   "seconds": round(seconds, 1),
                   "magnetization": result.extra.get("magnetization"),
                   "pressures_gpa": result.extra.get("pressures"),  # bulk modulus's scan
                   "pseudos": {e: presets.pseudo_variant(e, preset.generated)
                               for e in (args.cation, args.anion)},
                   "date": time.strftime("%Y-%m-%d"),
                   "cutoff_table": "uniform" if preset.name != "default" else args.note}
            print(json.dumps(row), flush=True)
            rows.append(row)
            path.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
