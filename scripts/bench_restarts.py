"""QE failures by class without and with automatic restarts; core use of 16-env batches.

Band gaps by the QE oracle (``--preset``, default ``fast``) of ``--num`` random crystals of
``--task`` in batches of ``--batch``; the crystals that restarted are computed again with
``max_restarts: 0``. Writes ``benchmarks/qe_restarts.json`` (after every batch; a re-run
continues it), prints Markdown tables and rewrites the "qe-restarts" section of
BENCHMARKS.md (method: ``crystaljax.benchmarks.restarts``).

Usage::

    python scripts/bench_restarts.py [--task band-gap-perovskite454-medium-v0] [--num 100]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks import restarts  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="band-gap-perovskite454-medium-v0")
    parser.add_argument("--num", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/qe_restarts.json")
    parser.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    data = restarts.measure(args.out, args.task, args.num, args.batch, args.preset,
                            args.workers, args.seed)
    print(restarts.table(data))
    if not args.no_markdown:
        restarts.write_section(args.out, "BENCHMARKS.md")


if __name__ == "__main__":
    from crystaljax.benchmarks.machine import run_script

    run_script(main)
