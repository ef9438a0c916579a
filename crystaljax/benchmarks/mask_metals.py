"""How many random crystals are metals, with and without the charge-balance mask
(scripts/bench_mask.py; issue 13 item 7).

Random episodes (uniform over the allowed elements, or over all of them) on one task; the
finished crystals' band gaps by the QE oracle (one batch per setting, the oracle's result
cache on, so a re-run reuses what was computed). A crystal is a metal when its gap is 0
(the band-gap recipe clips at 0, and odd electron counts are metals). Failed crystals are
counted apart, not as metals.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def sample_crystals(task: str, num: int, use_mask: bool, seed: int = 0) -> list:
    """``num`` random finished crystals of ``task`` (pymatgen Structures)."""
    import jax

    import crystaljax
    from crystaljax.env.charge_balance import random_crystals

    env, params = crystaljax.make(task, mask="charge_balance")
    state = random_crystals(env, params, jax.random.PRNGKey(seed), num, use_mask)
    return [env.to_structure(state, i) for i in range(num)]


def measure(out: str, task: str = "density-perovskite454-small-v0", num: int = 50,
            preset: str = "fast", workers: int | None = None, seed: int = 0) -> dict:
    """Band gaps of ``num`` masked and ``num`` unmasked random crystals into ``out``."""
    from crystaljax.oracles.qe.oracle import make_qe_oracle

    data: dict = {"task": task, "preset": preset, "num": num, "seed": seed, "settings": {}}
    oracle = make_qe_oracle("band_gap", preset=preset, workers=workers)
    try:
        for label, use_mask in (("charge_balance", True), ("none", False)):
            crystals = sample_crystals(task, num, use_mask, seed)
            t0 = time.time()
            results = oracle.evaluate(crystals)
            ok = [r for r in results if r.status.name == "OK"]
            metals = [r for r in ok if r.value <= 0.0]
            data["settings"][label] = {
                "crystals": num, "ok": len(ok), "failed": num - len(ok),
                "metals": len(metals),
                "metal_fraction": round(len(metals) / len(ok), 3) if ok else None,
                "failures": sorted({r.status.name for r in results} - {"OK"}),
                "wall_s": round(time.time() - t0, 1),
                "formulas": [c.composition.reduced_formula for c in crystals],
                "gaps": [None if r.status.name != "OK" else round(r.value, 3) for r in results],
            }
            print(label, {k: v for k, v in data["settings"][label].items()
                          if k not in ("formulas", "gaps")}, flush=True)
            Path(out).write_text(json.dumps(data, indent=1))
        data["oracle"] = {k: v for k, v in oracle.stats().items() if k != "cache"}
        Path(out).write_text(json.dumps(data, indent=1, default=str))
    finally:
        oracle.close()
    return data


def table(data: dict) -> str:
    """Markdown table of a :func:`measure` results file."""
    lines = ["| mask | crystals | computed | metals | metal fraction | failed | wall (s) |",
             "|---|---|---|---|---|---|---|"]
    for label, r in data["settings"].items():
        lines.append(f"| {label} | {r['crystals']} | {r['ok']} | {r['metals']} | "
                     f"{r['metal_fraction']} | {r['failed']} | {r['wall_s']} |")
    return "\n".join(lines)


def section(data: dict, source: str) -> str:
    """The BENCHMARKS.md section of a :func:`measure` results file (``source``: its path)."""
    from crystaljax.benchmarks.machine import machine_description

    settings = data["settings"]
    shared = 0
    if {"charge_balance", "none"} <= settings.keys():
        shared = sum(a == b for a, b in zip(settings["charge_balance"]["formulas"],
                                            settings["none"]["formulas"]))
    body = (
        "## Metals among random crystals, with and without the charge-balance mask "
        "(`scripts/bench_mask.py`)\n\n"
        f"Random episodes of task `{data['task']}`, {data['num']} crystals per setting "
        f"(seed {data['seed']}), band gaps by the QE oracle (preset `{data['preset']}`). "
        f"Machine: {machine_description()}. A crystal is a metal when its gap is 0 (the "
        "recipe clips at 0; odd electron counts are metals); failed crystals are counted "
        "apart. Both settings draw from the same PRNG keys, so a step whose unmasked choice "
        f"the mask allows picks the same element: {shared} of the {data['num']} crystals are "
        "the same in both samples (computed once, the second time from the oracle's cache, "
        f"hence the lower wall time). Source: `{source}`.\n\n" + table(data) + "\n")
    util = data.get("oracle", {}).get("core_utilisation")
    if util is not None:
        body += ("\nCore utilisation of the oracle over the whole run (busy core-seconds / "
                 f"available): {util:.2f}.\n")
    return body


def write_section(source: str, markdown_path: str) -> None:
    """Rewrite the ``mask-metals`` section of ``markdown_path`` from the file ``source``."""
    from crystaljax.benchmarks.machine import replace_section

    replace_section(markdown_path, "mask-metals", section(json.loads(Path(source).read_text()),
                                                          source))


__all__ = ["measure", "sample_crystals", "section", "table", "write_section"]
