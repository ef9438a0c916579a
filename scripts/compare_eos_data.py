"""Bulk modulus from pressures against from energies, on the same pw.x runs.

Five scf runs (volume scales 0.98..1.02, with the stress) per crystal at a preset's
bulk-modulus settings, then every fit of ``crystaljax.benchmarks.eos_data.FITS``: the
five-energy E(V) scan (``recipe.eos_data: energy``) and the pressure scans (``pressure``,
two volumes by default). Writes ``benchmarks/eos_data.json`` and prints a Markdown table.

Usage::

    python scripts/compare_eos_data.py [--crystals Si MgO MnO Mn-Sn ...] [--preset default]
        [--out benchmarks/eos_data.json] [--redo]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import eos_data  # noqa: E402
from crystaljax.benchmarks.machine import run_script  # noqa: E402


def main(argv=None) -> None:
    from crystaljax.benchmarks.validation import REFERENCE
    from crystaljax.oracles.qe.presets import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crystals", nargs="+",
                        default=[*REFERENCE, *eos_data.EXTRA_ROCKSALT],
                        help="validation crystals, the extra rock salts, or A-B on the "
                             "slowest 2-site template")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--out", default="benchmarks/eos_data.json")
    parser.add_argument("--redo", action="store_true", help="re-measure crystals in --out")
    args = parser.parse_args(argv)
    for name in args.crystals:
        try:
            eos_data.crystal(name)
        except Exception as exc:  # noqa: BLE001 - unknown name or element
            parser.error(str(exc))
    data = eos_data.compare(args.out, args.crystals, args.preset, args.redo)
    print(eos_data.table(data))


if __name__ == "__main__":
    run_script(main)
