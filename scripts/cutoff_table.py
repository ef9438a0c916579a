"""Summarise cutoff-convergence JSON files: Markdown table and the preset's cutoff dict.

Usage::

    python scripts/cutoff_table.py benchmarks/cutoff_convergence*.json
"""

from __future__ import annotations

import json
import sys

from converge_cutoffs import recommend_cutoff


def main(paths: list[str]) -> None:
    elements: dict = {}
    method: dict = {}
    for path in paths:
        data = json.load(open(path))
        method = data.get("method", method)
        elements.update(data["elements"])
    tol_mev, tol_gpa = method.get("tol_mev_per_atom", 5.0), method.get("tol_gpa", 0.5)
    print("| element | GTH variant | ecutwfc (Ry) | rule | dE at chosen (meV/atom) |"
          " dP at chosen (GPa) | vs top (Ry) | s per run at chosen |")
    print("|---|---|---|---|---|---|---|---|")
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
    print()
    print("DEFAULT_ECUTWFC =", json.dumps(chosen_map))


if __name__ == "__main__":
    main(sys.argv[1:])
