"""In-graph CHGNet: the relaxed property of random crystals (the learning target is its 95th
percentile) and the oracle's throughput.

Writes ``benchmarks/chgnet_distribution.json`` and the "mlip-distribution" section of
BENCHMARKS.md (method: ``crystaljax.benchmarks.mlip``).

Usage::

    python scripts/bench_mlip.py [--task bulk-modulus-perovskite-small-v0] [--num 512]
    python scripts/bench_mlip.py --learning dqn ppo [--seeds 0 1 2] [--env-steps 30000]
    python scripts/bench_mlip.py --verify [--top 5]   # the learners' best crystals with QE
    python scripts/bench_mlip.py --throughput 1 64 256 1024 [--host-devices 2]
    python scripts/bench_mlip.py --throughput 1 256 4096 65536 --host-workers 16 \\
        --host-max 1024 --section mlip-throughput-gpu --out FILE   # on a GPU machine
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if "--host-devices" in sys.argv[:-1]:  # XLA reads its flags when JAX starts: set them first
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                               f"device_count={sys.argv[sys.argv.index('--host-devices') + 1]}")

from crystaljax.benchmarks import mlip, mlip_learning  # noqa: E402
from crystaljax.benchmarks.machine import write_results  # noqa: E402
from crystaljax.benchmarks.results import Results  # noqa: E402
from crystaljax.config import nest_dotted, parse_overrides  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="bulk-modulus-perovskite-small-v0")
    parser.add_argument("--num", type=int, default=512, help="random crystals")
    parser.add_argument("--envs", type=int, default=64, help="envs per jitted batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="env overrides, e.g. oracle_options.relax=none")
    parser.add_argument("--throughput", nargs="*", type=int, metavar="ENVS",
                        help="instead: crystals/s of the in-graph oracle at these env counts "
                             "beside the host torch oracle on the same crystals")
    parser.add_argument("--host-workers", type=int, default=2)
    parser.add_argument("--host-max", type=int, default=None, help="--throughput: the host "
                        "oracle computes only the first this many crystals of a row")
    parser.add_argument("--section", default="mlip-throughput",
                        help="--throughput: the BENCHMARKS.md section to write")
    parser.add_argument("--host-devices", type=int, default=1,
                        help="--throughput: also the in-graph oracle with the envs split over "
                             "this many XLA host devices (one per core)")
    parser.add_argument("--baseline-set", nargs="+", default=None, metavar="KEY=VALUE",
                        help="--throughput: also time the in-graph oracle with these env "
                             "overrides on the same crystals (e.g. "
                             "oracle_options.symmetry=false) and report the speed-up")
    parser.add_argument("--learning", nargs="+", metavar="AGENT", help="instead: these agents "
                        "learn B at the 95th percentile (crystaljax.benchmarks.mlip_learning)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--env-steps", type=int, default=30_000)
    parser.add_argument("--agent-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="--learning: agent config overrides, e.g. train_frequency=4")
    parser.add_argument("--verify", action="store_true", help="instead: recompute the learning "
                        "runs' best crystals (--top per agent) with QE (fast, relax volume)")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--out", default=None, help="default benchmarks/chgnet_distribution.json "
                        "(benchmarks/chgnet_throughput.json with --throughput)")
    parser.add_argument("--no-markdown", action="store_true")
    args = parser.parse_args(argv)
    overrides = nest_dotted(parse_overrides(args.set))
    markdown_path = None if args.no_markdown else "BENCHMARKS.md"
    if args.learning or args.verify:
        out = args.out or mlip_learning.RESULTS
        checked = mlip_learning.verify_path(out)
        if args.verify:
            results = Results.load(out)
            mlip_learning.verify(results, args.top, workers=args.host_workers, out=checked)
        else:
            results = mlip_learning.run(args.learning, args.seeds, args.env_steps, out,
                                        env_overrides=overrides, agent_overrides=nest_dotted(
                                            parse_overrides(args.agent_set)))
        mlip_learning.write_outputs(results, out, markdown_path,
                                    mlip_learning.load_verification(checked))
        if markdown_path and os.path.abspath(out) == mlip_learning.RESULTS:
            mlip_learning.refresh_results_table()  # its MLIP rows read the default files
        return
    if args.throughput is not None:
        out = args.out or "benchmarks/chgnet_throughput.json"
        result = mlip.side_by_side(args.task, args.throughput or [1, 64, 256], args.host_workers,
                                   overrides, args.host_devices, args.host_max,
                                   progress=lambda partial: write_results(partial, out, None, "",
                                                                          None),
                                   baseline=nest_dotted(parse_overrides(args.baseline_set))
                                   if args.baseline_set else None)
        write_results(result, out, markdown_path, args.section, mlip.throughput_markdown)
        return
    result = mlip.distribution(args.task, args.num, args.seed, args.envs, overrides)
    write_results(result, args.out or "benchmarks/chgnet_distribution.json", markdown_path,
                  "mlip-distribution", mlip.markdown)


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
