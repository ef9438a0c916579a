"""Rewrite the DFT learning rows of benchmarks/results.md and benchmarks/dft_learning.png
from the run directories under benchmarks/dft_learning/ (issue 13 item 9).

The runs themselves are ``crystaljax train configs/band_gap_dft_{dqn,ppo}.yaml
train.runs_dir=benchmarks/dft_learning``, continued with ``crystaljax train --resume
benchmarks/dft_learning/RUN [--budget-minutes M]``.

Usage::

    python scripts/dft_learning_table.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    from crystaljax.benchmarks import dft_learning
    from crystaljax.benchmarks.mlip_learning import refresh_results_table

    runs = dft_learning.load_runs()
    if not runs:
        raise SystemExit(f"no run with metrics under {dft_learning.RUNS}")
    baseline = dft_learning.random_baseline(runs[0].target, runs[0].beta)
    print("\n".join(dft_learning.results_rows(runs, baseline)))
    print("figure:", dft_learning.plot(runs, baseline))
    refresh_results_table()
    print("rewrote benchmarks/results.md")


if __name__ == "__main__":
    main()
