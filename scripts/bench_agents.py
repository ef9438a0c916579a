"""Benchmark the agents (DQN, Rainbow, PPO, SAC) on the in-graph density task.

Task ``density-perovskite-small-v0`` with targets 3.0 and 5.0 g/cm3; each agent runs for its
``env_steps`` of ``configs/benchmark_agents.yaml``; every ``--eval-every`` env steps the greedy
policy of each seed plays ``--eval-episodes`` episodes. The density criterion and the
report: ``crystaljax.benchmarks.agents``. Writes ``benchmarks/agents.json``,
``benchmarks/agents.png`` and the "agents" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import agents  # noqa: E402
from crystaljax.benchmarks.results import ROOT, SETTINGS  # noqa: E402
from crystaljax.config import parse_overrides  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=None,
                        help="default: every agent with settings in --settings")
    parser.add_argument("--targets", nargs="+", type=float, default=[3.0, 5.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0,
                        help="PRNG seed the seed keys are split from (another set of seeds)")
    parser.add_argument("--env-steps", type=int, default=None,
                        help="env steps per seed (default: the agent's env_steps in --settings)")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=256)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="agent config overrides, applied to every agent on top of --settings")
    parser.add_argument("--settings", default=SETTINGS,
                        help="YAML of per-agent benchmark settings ('none' = package defaults)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "agents"),
                        help="path prefix of the .json and .png outputs")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="train nothing: merge results files of earlier runs (e.g. one "
                             "process per agent) into --out and BENCHMARKS.md")
    parser.add_argument("--no-markdown", action="store_true",
                        help="do not update BENCHMARKS.md (exploratory runs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--section", default="agents",
                        help="BENCHMARKS.md section to write (e.g. one for a re-run)")
    parser.add_argument("--title", default="Agents on the density task",
                        help="heading of that section")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.merge:
        results = agents.merge(args.merge, args.settings)
    else:
        results = agents.run_benchmark(
            args.agents, args.targets, args.settings, parse_overrides(args.set), seeds=args.seeds,
            env_steps=args.env_steps, eval_every=args.eval_every,
            eval_episodes=args.eval_episodes, progress=not args.no_progress, seed=args.seed)
    agents.write_outputs(results, args.out, None if args.no_markdown else agents.BENCHMARKS_MD,
                         args.section, args.title)
    return results


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
