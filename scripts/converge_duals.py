"""Measure each element's density cutoff (``ecutrho`` / ``ecutwfc``, the dual) per property.

At the ``default`` preset's ``ecutwfc`` of each property (``PAW_ECUTWFC`` for the density,
``PAW_ECUTWFC_BY_PROPERTY`` for the others), the probe cells of a property-rule scan are run
with lower duals (6, 5, 4) and compared with the scan's dual-8 reference by the property's
rule (method: ``crystaljax.benchmarks.cutoff_duals``). Results go to a JSON file (default
``benchmarks/cutoff_duals_pslibrary.json``), rewritten after each element, so the scan can
be stopped and resumed; ``scripts/cutoff_table.py FILE`` prints the measured choices (the
``default`` preset takes those of the density and the band gap, but for the transition metals:
``presets.PAW_DUAL_KEPT``). With ``--scans benchmarks/cutoff_convergence_pslibrary_oxides.json``
the same scan runs on the 3d metals' rock-salt oxides (``--out
benchmarks/cutoff_duals_pslibrary_oxides.json``; ``presets.PAW_DUAL_OXIDE_MEASURED``).

Usage::

    python scripts/converge_duals.py [--elements Si Na ...] [--out FILE] [--redo]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import cutoff_duals  # noqa: E402
from crystaljax.oracles.qe import presets  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", default="benchmarks/cutoff_convergence_pslibrary_"
                        "equilibrium.json", help="the property-rule scans of the preset's "
                        "ecutwfc tables")
    parser.add_argument("--elements", nargs="*", default=None,
                        help="default: every element of --scans")
    parser.add_argument("--out", default="benchmarks/cutoff_duals_pslibrary.json")
    parser.add_argument("--family-dir", default="/tmp/crystaljax-conv-pseudos")
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--pw-command", default="pw.x", help="pw.x executable (or a wrapper)")
    parser.add_argument("--redo", action="store_true",
                        help="measure the listed elements again even if --out has them")
    args = parser.parse_args(argv)
    tables = {"density": presets.PAW_ECUTWFC, **presets.PAW_ECUTWFC_BY_PROPERTY}
    try:
        cutoff_duals.converge_duals(args.scans, args.out, tables, args.elements,
                                    args.family_dir, args.time_limit, args.pw_command,
                                    args.redo)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
