"""Summarise cutoff-convergence JSON files: Markdown table and the preset's cutoff dict.

Usage::

    python scripts/cutoff_table.py benchmarks/cutoff_convergence*.json
"""

from __future__ import annotations

import json
import sys

from converge_cutoffs import recommend_cutoff


def _table(elements: dict, tol_mev: float, tol_gpa: float) -> dict:
    """Print one Markdown row per element; returns element -> chosen cutoff."""
    chosen_map = {}
    for el, v in elements.items():
        rows = v["rows"]
        cut, rule = recommend_cutoff(rows, tol_mev, tol_gpa)
        chosen_map[el] = cut
        ref = rows[-1]
        row = next(r for r in rows if r["ecutwfc"] == cut)
        de = 1000 * (row["energy_ev_per_atom"] - ref["energy_ev_per_atom"])
        dp = row["pressure_gpa"] - ref["pressure_gpa"]
        print(f"| {el} | {v['variant']} | {cut} | {rule} | {de:+.1f} | {dp:+.2f} | "
              f"{ref['ecutwfc']} | {row['seconds']} |")
    return chosen_map


def main(paths: list[str]) -> None:
    elements: dict = {}
    alternatives: dict = {}
    method: dict = {}
    for path in paths:
        data = json.load(open(path))
        method = data.get("method", method)
        elements.update(data["elements"])
        alternatives.update(data.get("gth_alternatives", {}))
    tol_mev, tol_gpa = method.get("tol_mev_per_atom", 5.0), method.get("tol_gpa", 0.5)
    print("| element | pseudopotential | ecutwfc (Ry) | rule | dE at chosen (meV/atom) |"
          " dP at chosen (GPa) | vs top (Ry) | s per run at chosen |")
    print("|---|---|---|---|---|---|---|---|")
    chosen_map = _table(elements, tol_mev, tol_gpa)
    fallback = {}
    if alternatives:
        print("\nGTH fall-backs of ld1.x elements (fast preset):\n")
        fallback = _table(alternatives, tol_mev, tol_gpa)
    print()
    print("DEFAULT_ECUTWFC =", json.dumps(chosen_map))
    if fallback:
        print("FAST_GTH_FALLBACK =", json.dumps(fallback))


if __name__ == "__main__":
    main(sys.argv[1:])
