"""Validate CHGNet (in-graph and torch) against published PBE values and our QE oracle.

Volume-relaxed bulk modulus and density of the validation crystals and random decorations
(``crystaljax.benchmarks.chgnet_validation``) into ``benchmarks/chgnet_validation.json``,
rewritten after every computation (a rerun resumes; ``--fresh``); Markdown tables printed.

Usage::

    python scripts/validate_chgnet.py [--num 30] [--preset fast] [--check 5] [--fresh]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import chgnet_validation as cv  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=30, help="random crystals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--template", default="rocksalt")
    parser.add_argument("--preset", default="fast", help="QE preset of the random crystals")
    parser.add_argument("--check", type=int, default=5, help="also with the default preset")
    parser.add_argument("--no-qe", action="store_true", help="CHGNet only")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing --out")
    parser.add_argument("--out", default="benchmarks/chgnet_validation.json")
    args = parser.parse_args(argv)
    if args.fresh and os.path.exists(args.out):
        os.remove(args.out)
    data = cv.run(args.out, args.num, args.seed, args.template, args.preset,
                  qe=not args.no_qe, check=args.check)
    print(cv.markdown(data))


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
