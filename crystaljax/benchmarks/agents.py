"""The agents on the in-graph density task (scripts/bench_agents.py): every agent and target
trained with :func:`~crystaljax.training.sweep.run_sweep`, judged by the density criterion,
written to ``benchmarks/agents.{json,png}`` and the "agents" section of BENCHMARKS.md."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from crystaljax.benchmarks.machine import replace_section
from crystaljax.benchmarks.results import (
    ROOT,
    Results,
    load_settings,
    settings_label,
    settings_source,
    split_settings,
)
from crystaljax.training.sweep import CRITERION_ERROR, CRITERION_REWARD, SweepResult, run_sweep

TASK = "density-perovskite-small-v0"
COLORS = {"dqn": "tab:blue", "rainbow": "tab:red", "ppo": "tab:green", "sac": "tab:purple"}


def run_benchmark(agents: Sequence[str] | None, targets: Sequence[float], settings_path: str | None,
                  overrides: Mapping | None = None, seeds: int = 3, env_steps: int | None = None,
                  eval_every: int = 2_000, eval_episodes: int = 256, progress: bool = True,
                  seed: int = 0) -> Results:
    """Every (target, agent) as one sweep of ``seeds`` seeds (their keys split from PRNG seed
    ``seed``); each agent's length and config from ``settings_path`` (``env_steps``
    overrides the length, ``overrides`` the config)."""
    settings = load_settings(settings_path)
    agents = list(agents or settings or ("dqn", "rainbow", "ppo", "sac"))
    results = Results(meta={"settings_file": settings_label(settings_path)})
    for target in targets:
        for name in agents:
            steps, own = split_settings(settings.get(name, {}))
            run = run_sweep(name, TASK, {"target": float(target)}, {**own, **(overrides or {})},
                            seeds=seeds, seed=seed, env_steps=env_steps or steps,
                            eval_every=eval_every, eval_episodes=eval_episodes, progress=progress)
            results.add(run)
            print(f"target {target} {name}: compile {run.compile_s:.1f} s, "
                  f"{run.env_steps_per_s:.0f} env steps/s, steps to criterion "
                  f"{run.steps_to_criterion()}", flush=True)
    return results


def merge(paths: Sequence[str], settings_path: str | None) -> Results:
    """Results files of earlier runs (e.g. one process per agent) as one."""
    results = Results.merge(paths)
    results.meta["settings_file"] = settings_source(results, settings_path)
    return results


def by_target(results: Results) -> dict[str, list[SweepResult]]:
    groups: dict[str, list[SweepResult]] = {}
    for run in results.runs:
        groups.setdefault(str(run.target), []).append(run)
    return groups


def machines_line(results: Results) -> str:
    """The machine of the runs, or which agents ran on which machine."""
    groups: dict[str, list[str]] = {}
    for run in results.runs:
        agents = groups.setdefault(run.machine_label, [])
        if run.agent not in agents:
            agents.append(run.agent)
    if len(groups) <= 1:
        return next(iter(groups), "-")
    return "; ".join(f"{', '.join(agents)} on {machine}" for machine, agents in groups.items())


def markdown(results: Results, source: str = "benchmarks/agents",
             title: str = "Agents on the density task") -> str:
    """The "agents" section of BENCHMARKS.md (``source``: the results' path prefix)."""
    first = results.runs[0]
    lines = [
        f"## {title} (`scripts/bench_agents.py`)", "",
        f"`scripts/bench_agents.py` on {machines_line(results)}. Task `{first.task}`; "
        f"{first.seeds} seeds vmapped per run; greedy evaluation on {first.eval_episodes} "
        f"episodes every {first.eval_every:,} env steps. Criterion: mean reward >= "
        f"{CRITERION_REWARD} and median |error| <= {CRITERION_ERROR} g/cm3. Learning curves: "
        f"`{source}.png`; raw numbers: `{source}.json`.", "",
        "| target (g/cm3) | agent | env steps | seeds meeting the criterion | median env steps "
        "to criterion | final mean reward (mean over seeds) | best final median abs error "
        "(g/cm3) |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = by_target(results)
    for target, runs in groups.items():
        for run in runs:
            reached = [s for s in run.steps_to_criterion() if s is not None]
            lines.append(
                f"| {target} | {run.agent} | {run.env_steps:,} | {len(reached)}/{run.seeds} | "
                f"{f'{int(np.median(reached)):,}' if reached else '-'} | "
                f"{np.mean(run.final_mean_reward()):.4f} | "
                f"{min(run.final_median_abs_error()):.4f} |")
    episodes = next((r.random["episodes"] for r in results.runs if r.random), 0)
    lines += ["", f"Per seed (the uniform random policy's numbers over {episodes} episodes for "
              "comparison):", "",
              "| target (g/cm3) | policy | seed | env steps to criterion | final mean reward | "
              "final median abs error (g/cm3) | train env steps/s (all seeds) | compile (s) |",
              "|---|---|---|---|---|---|---|---|"]
    for target, runs in groups.items():
        rnd = next((r.random for r in runs if r.random), None)
        if rnd:
            lines.append(f"| {target} | uniform random | - | never | {rnd['mean_reward']:.3f} | "
                         f"{rnd['median_abs_error']:.3f} | - | - |")
        for run in runs:
            rows = zip(run.steps_to_criterion(), run.final_mean_reward(),
                       run.final_median_abs_error())
            for seed, (reached, reward, error) in enumerate(rows):
                lines.append(
                    f"| {target} | {run.agent} | {seed_label(run, seed)} | "
                    f"{'not reached' if reached is None else f'{reached:,}'} | {reward:.4f} | "
                    f"{error:.4f} | {run.env_steps_per_s:.0f} | {run.compile_s:.0f} |")
    lines += ["", f"Agent settings ({results.meta.get('settings_file') or 'package defaults'}; "
              "each agent's overrides of its package defaults, command-line ones included):", ""]
    for run in next(iter(groups.values())):
        lines.append(f"* {run.agent}, {run.env_steps:,} env steps: {json.dumps(run.overrides)}")
    return "\n".join(lines)


def plot(results: Results, path: str) -> None:
    """Greedy mean reward and median |error| of every seed against env steps, per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_target(results)
    fig, axes = plt.subplots(2, len(groups), figsize=(6 * len(groups), 7), squeeze=False)
    for j, (target, runs) in enumerate(groups.items()):
        for run in runs:
            for s in range(run.seeds):
                label = run.agent if s == 0 else None
                for i, values in enumerate((run.eval_mean_reward, run.eval_median_abs_error)):
                    axes[i, j].plot(run.eval_steps, values[s], color=COLORS.get(run.agent),
                                    alpha=0.8, label=label)
        rnd = next((r.random for r in runs if r.random), None)
        for i, (key, level) in enumerate((("mean_reward", CRITERION_REWARD),
                                          ("median_abs_error", CRITERION_ERROR))):
            if rnd:
                axes[i, j].axhline(rnd[key], color="gray", ls="--", label="random")
            axes[i, j].axhline(level, color="k", ls=":", lw=0.8)
        axes[0, j].set_title(f"density target {target} g/cm3")
        axes[0, j].set_ylabel("greedy mean terminal reward")
        axes[1, j].set_ylabel("greedy median |density error| (g/cm3)")
        axes[1, j].set_yscale("log")
        axes[1, j].set_xlabel("env steps")
        axes[0, j].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seed_label(run, index: int) -> str:
    """Seed ``index`` of a sweep: the index, prefixed by the PRNG seed the keys were split
    from when that is not 0 (``--seed 1``: '1:0', '1:1', ...)."""
    return f"{run.seed}:{index}" if run.seed else str(index)


def write_outputs(results: Results, out: str, markdown_path: str | None = None,
                  section: str = "agents", title: str = "Agents on the density task") -> None:
    """``out``.json, ``out``.png and (unless ``markdown_path`` is None) the ``section`` of
    that markdown file."""
    results.save(out + ".json")
    plot(results, out + ".png")
    if markdown_path:
        source = os.path.relpath(out, os.path.dirname(os.path.abspath(markdown_path)))
        replace_section(markdown_path, section, markdown(results, source, title))
    print(f"wrote {out}.json and {out}.png")


BENCHMARKS_MD = os.path.join(ROOT, "BENCHMARKS.md")

__all__ = ["BENCHMARKS_MD", "TASK", "by_target", "machines_line", "markdown", "merge", "plot",
           "run_benchmark", "write_outputs"]
