"""Summarise cutoff-convergence JSON files: Markdown table and the preset's cutoff dicts.

A property-rule file (``--rule property``) also gives the per-property tables
(``PAW_ECUTWFC_BY_PROPERTY``: each rule of ``cutoff_properties.PROPERTY_RULES``); a dual-scan
file (``scripts/converge_duals.py``) the measured density-cutoff ratios (``DUALS_MEASURED``).

Usage::

    python scripts/cutoff_table.py benchmarks/cutoff_convergence_pslibrary_equilibrium.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import cutoff_duals  # noqa: E402
from crystaljax.benchmarks.cutoffs import summary  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="cutoff-convergence JSON files of one rule")
    args = parser.parse_args(argv)
    try:
        with open(args.files[0]) as first:
            duals = cutoff_duals.is_dual_scan(json.load(first))
        print(cutoff_duals.summary(args.files) if duals else summary(args.files))
    except (OSError, ValueError, KeyError) as exc:  # json.JSONDecodeError is a ValueError
        parser.error(f"cannot summarise {' '.join(args.files)}: {exc!r}")


if __name__ == "__main__":
    main()
