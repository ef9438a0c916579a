"""Env throughput: jit + vmap + lax.scan vs. the Gymnasium adapter in a Python loop.

Writes benchmarks/env_throughput.json and rewrites the env table in BENCHMARKS.md (logic:
``crystaljax.benchmarks.env_throughput``).

    python scripts/bench_env.py [--envs 1 64 1024 4096] [--steps 500] [--gym-steps 2000]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import env_throughput  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, nargs="+", default=[1, 64, 1024, 4096])
    ap.add_argument("--steps", type=int, default=500, help="scan length per timed run")
    ap.add_argument("--gym-steps", type=int, default=2000)
    ap.add_argument("--out", default="benchmarks/env_throughput.json")
    ap.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--section", default="env-throughput",
                    help="BENCHMARKS.md section to write (e.g. env-throughput-gpu)")
    ap.add_argument("--from-json", metavar="JSON",
                    help="only render the BENCHMARKS.md section of an earlier results file "
                         "(e.g. one measured on another machine)")
    args = ap.parse_args(argv)
    if args.from_json:
        return env_throughput.render(args.from_json, "BENCHMARKS.md", args.section)
    result = env_throughput.run(args.envs, args.steps, args.gym_steps)
    env_throughput.write(result, args.out, None if args.no_markdown else "BENCHMARKS.md",
                         args.section)
    return result


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
