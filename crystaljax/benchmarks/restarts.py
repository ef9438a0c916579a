"""Failure rate of the QE oracle by class, before and after automatic restarts, and the core
utilisation of 16-env batches (scripts/bench_restarts.py; issue 13 items 5 and 8).

Random crystals of a task (uniform random episodes, no mask; default 100 crystals of the
medium vocabulary on the perovskite454 cell) get their band gap from the QE oracle in
batches of ``batch`` crystals, as a ``batch``-env run hands its finished crystals over (the
oracle starts the longest-expected job first). The oracle has its default restarts
(``max_restarts`` 3); every pw.x attempt is recorded in the result.

*Before restarts* is measured, not inferred: the crystals with at least one restart are
computed again with ``max_restarts: 0`` (a different cache key, so a real run). A crystal
without restarts ran every pw.x input once and succeeded, so without restarts it runs the
same inputs and gets the same result.

Per batch: wall time, busy core-seconds (job wall time x cores per job) and utilisation
(busy / (wall x workers x cores per job)). The results file is written after each batch and
a re-run continues after the last batch in it (same task, seed and size).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

OK = "OK"


def _failure_class(result) -> str:
    """``ok``, or the failure class of a failed crystal: that of its last failed attempt
    (the status name when it never ran pw.x, e.g. an invalid input)."""
    if result.status.name == OK:
        return "ok"
    failed = [a for a in result.extra.get("attempts", ()) if a["status"] != OK]
    return failed[-1]["failure"] if failed else result.status.name.lower()


def crystal_record(structure, result) -> dict:
    """One crystal's row of the results file: formula, status, gap (eV), failure class,
    reason, restarts, its attempts (failure, remedy, status, seconds) and wall seconds."""
    attempts = [{k: a[k] for k in ("run", "attempt", "failure", "status", "remedy", "seconds")}
                for a in result.extra.get("attempts", ())]
    return {"formula": structure.composition.formula.replace(" ", ""),
            "status": result.status.name,
            "gap_eV": None if result.status.name != OK else round(float(result.value), 4),
            "failure": _failure_class(result),
            "reason": None if result.status.name == OK else str(result.reason)[:300],
            "restarts": int(result.extra.get("restarts", 0)),
            "magnetization": result.extra.get("magnetization"),
            "attempts": attempts,
            "seconds": round(sum(a["seconds"] for a in attempts), 1)}


def measure(out: str, task: str = "band-gap-perovskite454-medium-v0", num: int = 100,
            batch: int = 16, preset: str = "fast", workers: int | None = None,
            seed: int = 0, progress: bool = True, oracle_options: dict | None = None) -> dict:
    """Compute ``num`` random crystals of ``task`` in batches of ``batch``; then the ones that
    restarted once more without restarts. Writes ``out`` after every batch and returns it.
    ``oracle_options``: further QE oracle options (``pw_command``, ``cache_path``, ...)."""
    from crystaljax.benchmarks.mask_metals import sample_crystals
    from crystaljax.oracles.qe.oracle import make_qe_oracle

    header = {"task": task, "num": num, "batch": batch, "preset": preset, "seed": seed}
    path = Path(out)
    data = json.loads(path.read_text()) if path.exists() else {}
    if any(data.get(k) != v for k, v in header.items()):
        data = dict(header, batches=[], crystals=[])
    crystals = sample_crystals(task, num, use_mask=False, seed=seed)
    options = dict(oracle_options or {}, preset=preset, workers=workers)
    oracle = make_qe_oracle("band_gap", **options)
    workers_used = oracle.executor.max_workers
    cores = oracle.runner.mpi_ranks * oracle.runner.threads
    data.update(workers=workers_used, cores_per_job=cores)
    try:
        before_stats = oracle.stats()
        for start in range(len(data["crystals"]), num, batch):
            chunk = crystals[start:start + batch]
            t0 = time.time()
            results = oracle.evaluate(chunk)
            wall = time.time() - t0
            stats = oracle.stats()
            busy = stats["busy_core_seconds"] - before_stats["busy_core_seconds"]
            span = stats["batch_seconds"] - before_stats["batch_seconds"]
            data["batches"].append({
                "crystals": len(chunk), "wall_s": round(wall, 1),
                "busy_core_s": round(busy, 1),
                "utilisation": round(busy / (span * workers_used * cores), 3) if span else None,
                "cache_hits": stats["cache_hits"] - before_stats["cache_hits"]})
            before_stats = stats
            data["crystals"] += [crystal_record(s, r) for s, r in zip(chunk, results)]
            path.write_text(json.dumps(data, indent=1))
            if progress:
                failed = sum(r.status.name != OK for r in results)
                print(f"batch {len(data['batches'])}: {len(chunk)} crystals in {wall:.0f} s, "
                      f"{failed} failed, utilisation {data['batches'][-1]['utilisation']}",
                      flush=True)
    finally:
        oracle.close()
    _measure_without_restarts(data, crystals, options, path, progress)
    return data


def _measure_without_restarts(data: dict, crystals: list, options: dict, path: Path,
                              progress: bool) -> None:
    """The crystals that restarted, computed once more with ``max_restarts: 0``."""
    from crystaljax.oracles.qe.oracle import make_qe_oracle

    again = [i for i, c in enumerate(data["crystals"]) if c["restarts"] > 0
             and "without_restarts" not in c]
    if not again:
        return
    recipe = dict(options.get("recipe") or {}, max_restarts=0)
    oracle = make_qe_oracle("band_gap", **dict(options, recipe=recipe))
    try:
        results = oracle.evaluate([crystals[i] for i in again])
    finally:
        oracle.close()
    for i, result in zip(again, results):
        row = crystal_record(crystals[i], result)
        data["crystals"][i]["without_restarts"] = {
            k: row[k] for k in ("status", "gap_eV", "failure", "reason", "seconds")}
    path.write_text(json.dumps(data, indent=1))
    if progress:
        print(f"{len(again)} crystals with restarts computed again without", flush=True)


def before_after(data: dict) -> dict[str, tuple[int, int]]:
    """failure class -> (crystals failed with it without restarts, with restarts); ``ok``
    counts the successes."""
    counts: dict[str, list[int]] = {}
    for c in data["crystals"]:
        before = c.get("without_restarts", c)["failure"]
        counts.setdefault(before, [0, 0])[0] += 1
        counts.setdefault(c["failure"], [0, 0])[1] += 1
    return {k: (v[0], v[1]) for k, v in sorted(counts.items(), key=lambda kv: kv[0] != "ok")}


def rescues(data: dict) -> dict[str, int]:
    """remedy -> crystals whose restarts succeeded with it as the last remedy applied."""
    out: dict[str, int] = {}
    for c in data["crystals"]:
        if c["status"] == OK and c["restarts"] and c.get("without_restarts", {}).get(
                "status", OK) != OK:
            remedies = [a["remedy"] for a in c["attempts"] if a["remedy"]]
            out[remedies[-1]] = out.get(remedies[-1], 0) + 1
    return out


def table(data: dict) -> str:
    """Markdown tables: failures by class before / after, rescuing remedies, batches."""
    n = len(data["crystals"])
    counts = before_after(data)
    lines = ["| class | without restarts | with restarts |", "|---|---|---|"]
    for name, (before, after) in counts.items():
        lines.append(f"| {name} | {before} ({before / n:.0%}) | {after} ({after / n:.0%}) |")
    failed_before, failed_after = (n - ok for ok in counts.get("ok", (0, 0)))
    lines.append(f"| **failed** | **{failed_before} ({failed_before / n:.0%})** | "
                 f"**{failed_after} ({failed_after / n:.0%})** |")
    restarted = sum(c["restarts"] > 0 for c in data["crystals"])
    lines += ["", f"Crystals with at least one restart: {restarted} of {n}; rescued by "
              "(last remedy applied): " + (", ".join(f"{k} {v}" for k, v in
                                                       rescues(data).items()) or "none") + ".",
              "", "| batch | crystals | wall (s) | busy core-s | core utilisation | "
              "cache hits |", "|---|---|---|---|---|---|"]
    for i, b in enumerate(data["batches"], 1):
        lines.append(f"| {i} | {b['crystals']} | {b['wall_s']} | {b['busy_core_s']} | "
                     f"{b['utilisation']} | {b['cache_hits']} |")
    busy = sum(b["busy_core_s"] for b in data["batches"])
    wall = sum(b["wall_s"] for b in data["batches"])
    cores = data["workers"] * data["cores_per_job"]
    if wall:
        lines.append(f"| all | {n} | {wall:.0f} | {busy:.0f} | {busy / (wall * cores):.3f} | "
                     f"{sum(b['cache_hits'] for b in data['batches'])} |")
    return "\n".join(lines)


def section(data: dict, source: str) -> str:
    """The BENCHMARKS.md section of a :func:`measure` results file (``source``: its path)."""
    from crystaljax.benchmarks.machine import machine_description

    return (
        "## QE failures by class, without and with automatic restarts; core utilisation of "
        "16-env batches (`scripts/bench_restarts.py`)\n\n"
        f"{len(data['crystals'])} random crystals of task `{data['task']}` (seed "
        f"{data['seed']}, no mask), band gaps by the QE oracle (preset `{data['preset']}`, "
        f"{data['workers']} workers x {data['cores_per_job']} core), handed over in batches "
        f"of {data['batch']} as a {data['batch']}-env run does. Machine: "
        f"{machine_description()}. *Without restarts* is measured: the crystals that "
        "restarted were computed again with `max_restarts: 0`; the others ran each pw.x "
        "input once and succeeded, which is the same without restarts. A failed crystal's "
        "class is that of its last failed attempt. Core utilisation = busy core-seconds / "
        "(batch wall time x cores). Source: `" + source + "`.\n\n" + table(data) + "\n")


def write_section(source: str, markdown_path: str) -> None:
    """Rewrite the ``qe-restarts`` section of ``markdown_path`` from the file ``source``."""
    from crystaljax.benchmarks.machine import replace_section

    replace_section(markdown_path, "qe-restarts",
                    section(json.loads(Path(source).read_text()), source))


__all__ = ["before_after", "crystal_record", "measure", "rescues", "section", "table",
           "write_section"]
