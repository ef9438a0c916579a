"""Validate a QE preset (default: ``default``) against published PBE numbers.

For each crystal at the lattice constant of docs/VALIDATION.md: the band gap and the bulk
modulus with the preset, and the density after a full vc-relax (``--nstep``) against
the density of the PBE equilibrium lattice (``crystaljax.benchmarks.validation``). Writes
``benchmarks/validation.json`` and prints a Markdown table.

Usage::

    python scripts/validate_dft.py [--crystals Si NaCl ...] [--preset default] [--mpi-ranks 1]
        [--properties band_gap bulk_modulus density]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import validation  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crystals", nargs="*", default=list(validation.REFERENCE))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--mpi-ranks", type=int, default=1)
    parser.add_argument("--nstep", type=int, default=60)
    parser.add_argument("--properties", nargs="+", default=list(validation.TARGETS),
                        choices=list(validation.TARGETS),
                        help="validate these only (the file keeps the others' rows)")
    parser.add_argument("--out", default="benchmarks/validation.json")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.crystals) - set(validation.REFERENCE))
    if unknown:
        parser.error(f"unknown crystals {unknown}; known: {' '.join(validation.REFERENCE)}")
    from crystaljax.oracles.qe.presets import PRESETS

    if args.preset not in PRESETS:
        parser.error(f"unknown preset {args.preset!r}; known: {' '.join(PRESETS)}")
    print(validation.validation_table(validation.validate_all(
        args.out, args.crystals, args.mpi_ranks, args.nstep, args.preset, args.properties)))


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
