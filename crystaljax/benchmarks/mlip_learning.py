"""Agents learning a relaxed property from the in-graph CHGNet (``scripts/bench_mlip.py
--learning``): issue 14's learning benchmark.

Task ``bulk-modulus-perovskite-small-v0`` with ``oracle: chgnet``, ``relax: volume``; the
target is the 95th percentile of the random crystals' bulk modulus
(``benchmarks/chgnet_distribution.json``, :func:`crystaljax.benchmarks.mlip.distribution`).
Each seed is one :func:`~crystaljax.training.sweep.run_sweep` of one seed, saved as soon as
it ends (a run stopped half way keeps its finished seeds); seed ``k`` of an agent uses PRNG
seed ``k``. Criterion: a greedy median relative error ``|B - target| / target`` of at most
:data:`CRITERION_RELATIVE` within the run. Results: ``benchmarks/mlip_learning.json`` and
the "mlip-learning" section of BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from crystaljax.benchmarks.machine import replace_section
from crystaljax.benchmarks.results import ROOT, Results
from crystaljax.training.sweep import SweepResult, run_sweep

TASK = "bulk-modulus-perovskite-small-v0"
CRITERION_RELATIVE = 0.05
DISTRIBUTION = os.path.join(ROOT, "benchmarks", "chgnet_distribution.json")


def target_from_distribution(path: str = DISTRIBUTION, percentile: str = "95") -> float:
    """The ``percentile`` of the random crystals' property in a distribution file."""
    with open(path) as f:
        return float(json.load(f)["percentiles"][percentile])


def run(agents: Sequence[str], seeds: Sequence[int], env_steps: int, out: str,
        target: float | None = None, env_overrides: Mapping | None = None,
        agent_overrides: Mapping | None = None, eval_every: int = 2_500,
        eval_episodes: int = 4, random_episodes: int = 256, progress: bool = True) -> Results:
    """Train every (agent, seed) for ``env_steps`` env steps, one seed per sweep; ``out``
    (a results JSON, extended if it exists) is rewritten after every seed."""
    target = float(target if target is not None else target_from_distribution())
    env = {"oracle": "chgnet", "oracle_options": {"relax": "volume"}, "target": target,
           **dict(env_overrides or {})}
    results = Results.load(out) if os.path.exists(out) else Results()
    results.meta.update(task=TASK, criterion_relative=CRITERION_RELATIVE)
    for name in agents:
        for seed in seeds:
            sweep = run_sweep(name, TASK, env, dict(agent_overrides or {}), seeds=1, seed=seed,
                              env_steps=env_steps, eval_every=eval_every,
                              eval_episodes=eval_episodes,
                              random_episodes=random_episodes if seed == seeds[0] else 0,
                              progress=progress)
            results.add(sweep)
            results.save(out)
            print(f"{name} seed {seed}: steps to {CRITERION_RELATIVE:.0%} "
                  f"{steps_to_criterion(sweep)}, final relative error "
                  f"{relative_errors(sweep)[-1]:.3f}, {sweep.env_steps_per_s:.1f} env steps/s",
                  flush=True)
    return results


def relative_errors(run: SweepResult) -> np.ndarray:
    """Greedy median |B - target| / target at each evaluation [points] (seed 0 of the run)."""
    return np.asarray(run.eval_median_abs_error[0], float) / abs(run.target)


def steps_to_criterion(run: SweepResult) -> int | None:
    """First evaluated env step with a relative error <= CRITERION_RELATIVE (None: never)."""
    hits = np.flatnonzero(relative_errors(run) <= CRITERION_RELATIVE)
    return int(run.eval_steps[hits[0]]) if hits.size else None


def markdown(results: Results, source: str = "benchmarks/mlip_learning") -> str:
    """The "mlip-learning" section of BENCHMARKS.md."""
    first = results.runs[0]
    baseline = next((r.random for r in results.runs if r.random), None)
    lines = [
        "## Agents learning the relaxed bulk modulus from the in-graph CHGNet "
        "(`scripts/bench_mlip.py --learning`)", "",
        f"{first.machine_label}. Task `{first.task}`, env {json.dumps(first.env)}: target "
        f"{first.target:.1f} GPa, the 95th percentile of random crystals "
        "(`benchmarks/chgnet_distribution.json`). One seed per run (seed k: PRNG seed k); "
        f"greedy evaluation ({first.eval_episodes} episodes) every "
        f"{' or '.join(sorted({f'{r.eval_every:,}' for r in results.runs}))} env steps (whole "
        "training iterations). Criterion: greedy median relative error <= {CRITERION_RELATIVE:.0%}. "
        f"Raw numbers: `{source}.json`.", "",
        "| agent | seed | env steps (trained) | env steps to criterion | final greedy relative error "
        "| best B found in training (GPa) | train env steps/s | compile (s) | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|"]
    if baseline:
        lines.append(f"| uniform random ({baseline['episodes']} episodes) | - | - | never | "
                     f"{baseline['median_abs_error'] / abs(first.target):.3f} | - | - | - | - |")
    for run in results.runs:
        reached = steps_to_criterion(run)
        best = np.asarray(run.best_property, float).ravel()
        lines.append(
            f"| {run.agent} | {run.seed} | {run.chunk_steps[-1]:,} | "
            f"{'not reached' if reached is None else f'{reached:,}'} | "
            f"{relative_errors(run)[-1]:.3f} | {best[0]:.1f} | {run.env_steps_per_s:.1f} | "
            f"{run.compile_s:.0f} | {run.wall_s:.0f} |")
    lines += ["", "Agent settings (package defaults with these overrides): " + "; ".join(
        sorted({f"{r.agent} {json.dumps(r.overrides)}" for r in results.runs})) + "."]
    return "\n".join(lines)


def write_outputs(results: Results, out: str, markdown_path: str | None) -> None:
    """``out`` (JSON) and, unless ``markdown_path`` is None, its section there."""
    results.save(out)
    if markdown_path:
        source = os.path.relpath(os.path.splitext(out)[0],
                                 os.path.dirname(os.path.abspath(markdown_path)))
        replace_section(markdown_path, "mlip-learning", markdown(results, source))


__all__ = ["CRITERION_RELATIVE", "TASK", "markdown", "relative_errors", "run",
           "steps_to_criterion", "target_from_distribution", "write_outputs"]
