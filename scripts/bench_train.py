"""Training throughput of every agent beside the env's own, with compile times and the
arithmetic of one update.

Writes benchmarks/train_throughput.json and rewrites the training table in BENCHMARKS.md
(logic: ``crystaljax.benchmarks.train_throughput``).

    python scripts/bench_train.py [--agents dqn ppo] [--envs 8 256 1024] [--repeats 2]
    python scripts/bench_train.py --agents ppo --update   # re-measure PPO, keep the rest
    python scripts/bench_train.py --envs 8 256 1024 4096 16384 --section train-throughput-gpu
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import train_throughput as tt  # noqa: E402
from crystaljax.benchmarks.results import SETTINGS  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", nargs="+", default=list(tt.AGENTS), choices=tt.AGENTS)
    ap.add_argument("--envs", type=int, nargs="+", default=list(tt.DEFAULT_ENVS))
    ap.add_argument("--repeats", type=int, default=2, help="timed chunks per cell (best of)")
    ap.add_argument("--warm-envs", type=int, default=tt.WARM_ENVS,
                    help="envs of the cell re-run on a warm compilation cache (0: none)")
    ap.add_argument("--settings", default=SETTINGS, help="benchmark settings YAML")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per cell")
    ap.add_argument("--out", default="benchmarks/train_throughput.json")
    ap.add_argument("--update", action="store_true",
                    help="keep the rows of an existing --out file that this run does not "
                         "re-measure (same agent and envs)")
    ap.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--section", default="train-throughput")
    ap.add_argument("--from-json", metavar="JSON",
                    help="only render the BENCHMARKS.md section of an earlier results file")
    args = ap.parse_args(argv)
    if args.from_json:
        return tt.render(args.from_json, "BENCHMARKS.md", args.section)
    if min(args.envs) < 1 or args.repeats < 1:
        raise ValueError("--envs and --repeats must be >= 1")
    result = tt.run(args.agents, args.envs, args.settings, args.repeats,
                    args.warm_envs or None, args.timeout)
    if args.update and os.path.exists(args.out):
        with open(args.out) as f:
            result = tt.merge_rows(json.load(f), result)
    tt.write(result, args.out, None if args.no_markdown else "BENCHMARKS.md", args.section)
    return result


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
