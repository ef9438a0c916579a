"""Benchmark the QE oracle; writes ``benchmarks/dft.json`` and prints a Markdown table.

Wall time per property (default preset, the three template cells of REFERENCE.md),
evaluations per hour of random decorations of the 4-site cell (1 worker, and a local pool
filling all cores) and the cache hit ratio of simulated training episodes. What each
measures: ``crystaljax.benchmarks.dft``.

Usage::

    python scripts/bench_dft.py [--skip-throughput] [--batch 4] [--episodes 500]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import dft  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/dft.json")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-properties", action="store_true")
    parser.add_argument("--only", nargs="*", default=None,
                        help="re-measure only these properties (rows of other ones are kept)")
    parser.add_argument("--skip-hit-ratio", action="store_true")
    parser.add_argument("--time-limit", type=float, default=900.0)
    args = parser.parse_args(argv)
    data = dft.bench(args.out, args.batch, args.episodes, args.time_limit,
                     properties=not args.skip_properties, only=args.only,
                     hit_ratios=not args.skip_hit_ratio, throughputs=not args.skip_throughput)
    print(dft.bench_table(data))


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
