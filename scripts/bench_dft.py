"""Benchmark the QE oracle; writes ``benchmarks/dft.json`` and prints Markdown tables.

Wall time per property of the ``default`` and ``gth`` presets side by side, same crystals,
one after the other (the three CrystalGym cells, each with a soft decoration and one with
O/N/F, and the validation crystals; ratio per row), evaluations per hour of random
decorations of the 4-site cell (1 worker, and a local pool filling all cores) and the cache
hit ratio of simulated training episodes. What each
measures: ``crystaljax.benchmarks.dft``.

Usage::

    python scripts/bench_dft.py [--presets default gth] [--skip-throughput] [--redo]
    python scripts/bench_dft.py --presets default:reuse_density=false default \
        --only bulk_modulus --cases validation --out benchmarks/dft_reuse.json
    python scripts/bench_dft.py --gap-recipe 16
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import dft, gap_recipe  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/dft.json",
                        help="results file; rows (cell, property) already in it are kept and "
                             "printed, not measured again, unless --redo")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-properties", action="store_true")
    parser.add_argument("--only", nargs="*", default=None,
                        help="measure only these properties (rows already measured are kept)")
    parser.add_argument("--skip-hit-ratio", action="store_true")
    parser.add_argument("--time-limit", type=float, default=900.0,
                        help="wall-clock limit of one pw.x run (s); a run past it is a TIMEOUT")
    parser.add_argument("--presets", nargs=2, default=["default", "gth"],
                        metavar="PRESET[:KEY=VALUE,...]",
                        help="the two columns: preset names, each optionally with recipe "
                             "overrides and pw.x settings overrides (settings.KEY), e.g. "
                             "default:reuse_density=false default or "
                             "default:settings.mixing_mode=TF default")
    parser.add_argument("--cases", nargs="*", default=None, metavar="TEXT",
                        help="measure only the cases whose label contains one of these")
    parser.add_argument("--redo", action="store_true", help="re-measure rows already in --out")
    parser.add_argument("--gap-recipe", type=int, metavar="N",
                        help="instead: band gaps of N random crystals, smearing first against "
                             "fixed occupations first (the baseline commit), into "
                             "benchmarks/gap_recipe.json")
    args = parser.parse_args(argv)
    if args.gap_recipe:
        print(gap_recipe.table(gap_recipe.compare("benchmarks/gap_recipe.json",
                                                  num=args.gap_recipe)))
        return
    data = dft.bench(args.out, args.batch, args.episodes, args.time_limit,
                     properties=not args.skip_properties, only=args.only,
                     hit_ratios=not args.skip_hit_ratio, throughputs=not args.skip_throughput,
                     presets=args.presets, redo=args.redo, cases=args.cases)
    print(dft.bench_table(data))


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
