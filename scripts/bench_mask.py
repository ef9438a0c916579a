"""Fraction of metals among random crystals with and without the charge-balance mask.

Band gaps by the QE oracle (``--preset``, default ``fast``) of ``--num`` random crystals of
each setting; writes ``benchmarks/mask_metals.json``, prints a Markdown table and rewrites
the "mask-metals" section of BENCHMARKS.md (method:
``crystaljax.benchmarks.mask_metals``).

Usage::

    python scripts/bench_mask.py [--task density-perovskite454-small-v0] [--num 50]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import mask_metals  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="density-perovskite454-small-v0",
                        help="task whose cell and vocabulary are sampled (its own property "
                             "is not used)")
    parser.add_argument("--num", type=int, default=50)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/mask_metals.json")
    parser.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    data = mask_metals.measure(args.out, args.task, args.num, args.preset, args.workers,
                               args.seed)
    print(mask_metals.table(data))
    if not args.no_markdown:
        mask_metals.write_section(args.out, "BENCHMARKS.md")


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
