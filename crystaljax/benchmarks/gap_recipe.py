"""Band gaps with the smearing run first against fixed occupations first (the recipe before
2026-12-03), the same random crystals, one run (scripts/bench_dft.py --gap-recipe).

Each variant runs in its own subprocess with ``PYTHONPATH`` set to a checkout of its code
(this one, and a temporary ``git worktree`` of the baseline commit, removed afterwards),
the result cache off, the same preset and workers; per crystal: status, gap, seconds and the pw.x runs made.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from crystaljax.benchmarks.results import ROOT

#: the fixed-occupations-first recipe: the commit before the change
BASELINE = "8bc08ad"

# Runs in the variant's subprocess: only APIs that both checkouts have.
_TIMING = """
import json, sys, time
from crystaljax.benchmarks.mask_metals import sample_crystals
from crystaljax.oracles.qe.oracle import make_qe_oracle
task, num, seed, preset, workers, out = json.loads(sys.argv[1])
crystals = sample_crystals(task, num, use_mask=False, seed=seed)
oracle = make_qe_oracle("band_gap", preset=preset, workers=workers, cache_path=None)
try:
    t0 = time.time()
    results = oracle.evaluate(crystals)
    wall = time.time() - t0
    stats = oracle.stats()
finally:
    oracle.close()
rows = [{"formula": c.composition.formula.replace(" ", ""), "status": r.status.name,
         "gap_eV": None if r.status.name != "OK" else round(float(r.value), 4),
         "seconds": round(float(r.seconds), 1),
         "runs": [a["run"] for a in r.extra.get("attempts", ())]}
        for c, r in zip(crystals, results)]
json.dump({"wall_s": round(wall, 1), "dft_seconds": round(stats["dft_seconds"], 1),
           "crystals": rows}, open(out, "w"), indent=1)
"""


def _run_variant(code_path: str, task: str, num: int, seed: int, preset: str, workers: int,
                 out: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_path))
    subprocess.run([sys.executable, "-c", _TIMING,
                    json.dumps([task, num, seed, preset, workers, out])],
                   check=True, env=env, cwd=str(code_path))
    return json.loads(Path(out).read_text())


@contextlib.contextmanager
def baseline_checkout(commit: str = BASELINE) -> Iterator[str]:
    """A temporary ``git worktree`` of ``commit`` (under the temp folder), removed on exit."""
    path = Path(tempfile.mkdtemp(prefix=f"crystaljax-baseline-{commit}-")) / "tree"
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", str(path), commit],
                   check=True, capture_output=True)
    try:
        yield str(path)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", str(path)],
                       check=False, capture_output=True)
        shutil.rmtree(path.parent, ignore_errors=True)


def compare(out: str, task: str = "band-gap-perovskite454-small-v0", num: int = 16,
            seed: int = 1, preset: str = "fast", workers: int = 2,
            baseline: str = BASELINE) -> dict:
    """Both variants on the same ``num`` random crystals of ``task``; writes ``out``."""
    tmp = Path(out).resolve().with_suffix(".part")  # the subprocesses run in their checkout
    data = {"task": task, "num": num, "seed": seed, "preset": preset, "workers": workers,
            "baseline": baseline, "variants": {}}
    with baseline_checkout(baseline) as baseline_path:
        for label, path in (("fixed first (baseline)", baseline_path),
                            ("smearing first", ROOT)):
            data["variants"][label] = _run_variant(path, task, num, seed, preset, workers,
                                                   str(tmp))
            print(label, {k: v for k, v in data["variants"][label].items()
                          if k != "crystals"}, flush=True)
    tmp.unlink(missing_ok=True)
    Path(out).write_text(json.dumps(data, indent=1))
    return data


def table(data: dict) -> str:
    """Markdown: per variant the wall time, DFT seconds, runs, metals and failures; then
    the ratio and the largest gap difference over crystals OK in both."""
    lines = ["| recipe | wall (s) | DFT core-s | pw.x runs | metals | insulators | failed |",
             "|---|---|---|---|---|---|---|"]
    variants = data["variants"]
    for label, v in variants.items():
        ok = [c for c in v["crystals"] if c["status"] == "OK"]
        metals = sum(c["gap_eV"] == 0 for c in ok)
        lines.append(f"| {label} | {v['wall_s']} | {v['dft_seconds']} | "
                     f"{sum(len(c['runs']) for c in v['crystals'])} | {metals} | "
                     f"{len(ok) - metals} | {len(v['crystals']) - len(ok)} |")
    (_, old), (_, new) = list(variants.items())[:2]
    pairs = [(a, b) for a, b in zip(old["crystals"], new["crystals"])
             if a["status"] == b["status"] == "OK"]
    diff = max((abs(a["gap_eV"] - b["gap_eV"]) for a, b in pairs), default=float("nan"))
    same = sum(a["status"] == b["status"] for a, b in zip(old["crystals"], new["crystals"]))
    lines += ["", f"Ratio (fixed first / smearing first): wall "
              f"{old['wall_s'] / new['wall_s']:.2f}x, DFT core-seconds "
              f"{old['dft_seconds'] / new['dft_seconds']:.2f}x. Same status for {same} of "
              f"{len(new['crystals'])} crystals; largest gap difference over the {len(pairs)} "
              f"computed by both: {diff:.3g} eV."]
    return "\n".join(lines)


__all__ = ["BASELINE", "baseline_checkout", "compare", "table"]
