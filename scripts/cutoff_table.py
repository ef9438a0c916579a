"""Summarise cutoff-convergence JSON files: Markdown table and the preset's cutoff dict.

Usage::

    python scripts/cutoff_table.py benchmarks/cutoff_convergence*.json
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crystaljax.benchmarks.cutoffs import summary  # noqa: E402

if __name__ == "__main__":
    print(summary(sys.argv[1:]))
