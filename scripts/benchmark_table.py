"""The baseline results table: every algorithm x property x CrystalGym cell, 3 seeds vmapped.

Density rows: in-graph oracle at each agent's full benchmark length, greedy evaluation every
``--eval-every`` env steps. Bulk modulus and band gap rows: real Quantum ESPRESSO
(``--qe-preset``) at ``--qe-steps`` env steps per seed. The rows and their columns:
``crystaljax.benchmarks.table``. Writes ``benchmarks/results.json``, ``benchmarks/results.md``
and ``benchmarks/results.png``; ``make benchmark-table`` runs it all.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import table  # noqa: E402
from crystaljax.benchmarks.results import ROOT, SETTINGS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=None,
                        help="default: every agent in configs/benchmark_agents.yaml")
    parser.add_argument("--properties", nargs="+", default=list(table.PROPERTIES),
                        choices=table.PROPERTIES)
    parser.add_argument("--cells", nargs="+", default=list(table.CELLS), choices=table.CELLS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed the seed keys are split from")
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--eval-episodes", type=int, default=256)
    parser.add_argument("--env-steps", type=int, default=None,
                        help="override every agent's in-graph run length (quick checks)")
    parser.add_argument("--qe-steps", type=int, default=20,
                        help="env steps per seed of a QE row (the DFT budget)")
    parser.add_argument("--qe-num-envs", type=int, default=2)
    parser.add_argument("--qe-preset", default="fast")
    parser.add_argument("--qe-workers", type=int, default=2)
    parser.add_argument("--qe-time-limit", type=float, default=300.0)
    parser.add_argument("--settings", default=SETTINGS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="train nothing: merge results files of earlier runs (of this script "
                             "or scripts/bench_agents.py) into --out")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"),
                        help="path prefix of the .json, .md and .png outputs")
    return parser.parse_args(argv)


def main(argv=None):
    options = vars(parse_args(argv))
    out, merge, progress = options.pop("out"), options.pop("merge"), not options.pop("no_progress")
    if merge:
        return table.merge(merge, out)
    return table.run_table(table.TableOptions(**options, progress=progress), out)


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
