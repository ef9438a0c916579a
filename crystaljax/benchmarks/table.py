"""The baseline results table (scripts/benchmark_table.py): every agent x property x
CrystalGym cell as one :func:`~crystaljax.training.sweep.run_sweep`, written to
``benchmarks/results.{json,md,png}``.

Density rows use the in-graph oracle and the greedy curve; bulk modulus and band gap rows use
real Quantum ESPRESSO at a small DFT budget, with the training episodes' mean terminal reward
as their curve (a greedy evaluation would cost DFT).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from crystaljax.benchmarks import dft_learning
from crystaljax.benchmarks.results import ROOT, Results, load_settings, settings_label, split_settings
from crystaljax.properties import get_property
from crystaljax.training.sweep import CRITERION_REWARD as LEARNT
from crystaljax.training.sweep import SweepResult, run_sweep

CELLS = ("perovskite", "perovskite454", "bcc4")
#: the table's rows: CrystalGym's three properties, from the property registry
PROPERTIES = ("density", "bulk_modulus", "band_gap")
#: properties an in-graph oracle computes (their rows need no DFT)
IN_GRAPH = tuple(p for p in PROPERTIES if "analytic" in get_property(p).oracles)
UNITS = {p: get_property(p).unit for p in PROPERTIES}
#: the MLIP learning benchmark's results (scripts/bench_mlip.py --learning): rows of their own
MLIP_LEARNING = os.path.join(ROOT, "benchmarks", "mlip_learning.json")


def task_id(prop: str, cell: str) -> str:
    return f"{get_property(prop).task_name}-{cell}-small-v0"


@dataclasses.dataclass
class TableOptions:
    """What scripts/benchmark_table.py runs (its command-line flags)."""

    agents: Sequence[str] | None = None
    properties: Sequence[str] = PROPERTIES
    cells: Sequence[str] = CELLS
    seeds: int = 3
    seed: int = 0
    eval_every: int = 2000
    eval_episodes: int = 256
    env_steps: int | None = None  # every in-graph row's length (default: the settings')
    qe_steps: int = 20
    qe_num_envs: int = 2
    qe_preset: str = "fast"
    qe_workers: int = 2
    qe_time_limit: float = 300.0
    settings: str | None = None
    progress: bool = True


def qe_overrides(name: str, overrides: Mapping, qe_steps: int, num_envs: int) -> dict:
    """Agent overrides for a QE row: small batches (DFT runs a crystal per finished episode);
    PPO rollouts that fit the budget with one minibatch; replay agents learn from the start."""
    out = {**overrides, "num_envs": num_envs}
    if name == "ppo":
        from crystaljax.agents import default_config

        default_steps = default_config("ppo").num_steps
        out.update(num_steps=min(int(out.get("num_steps", default_steps)),
                                 max(1, qe_steps // num_envs)),
                   num_minibatches=1)
    else:
        out["learning_starts"] = 0
    return {k: v for k, v in out.items() if k != "buffer_size" or v >= num_envs}


def run_row(name: str, prop: str, cell: str, settings: Mapping, opts: TableOptions) -> SweepResult:
    """One row: ``opts.seeds`` seeds of ``name`` on ``prop`` x ``cell``."""
    steps, overrides = split_settings(settings)
    kwargs: dict = dict(seeds=opts.seeds, seed=opts.seed, progress=opts.progress)
    if prop in IN_GRAPH:
        return run_sweep(name, task_id(prop, cell), {}, overrides, env_steps=opts.env_steps or steps,
                         eval_every=opts.eval_every, eval_episodes=opts.eval_episodes, **kwargs)
    env = {"oracle": "qe", "oracle_options": {"preset": opts.qe_preset, "workers": opts.qe_workers,
                                              "time_limit": opts.qe_time_limit}}
    overrides = qe_overrides(name, overrides, opts.qe_steps, opts.qe_num_envs)
    return run_sweep(name, task_id(prop, cell), env, overrides, env_steps=opts.qe_steps,
                     eval_every=max(1, opts.qe_steps // 4), eval_episodes=0, random_episodes=0,
                     **kwargs)


def run_table(opts: TableOptions, out: str | None = None) -> Results:
    """Every requested row; with ``out``, the results are written after each row."""
    settings = load_settings(opts.settings)
    agents = list(opts.agents or settings)
    from crystaljax.agents import list_agents

    unknown = [a for a in agents if a not in settings or a not in list_agents()]
    if unknown:
        raise SystemExit(f"no benchmark settings or no such agent: {unknown}; "
                         f"settings for {sorted(settings)}, agents {list_agents()}")
    results = Results(meta={"settings_file": settings_label(opts.settings)})
    for prop in opts.properties:
        for cell in opts.cells:
            for name in agents:
                results.add(run_row(name, prop, cell, settings[name], opts))
                if out:  # partial results survive an interrupted run
                    write_outputs(results, out, plot_too=False)
    if out:
        write_outputs(results, out)
    return results


def _default_target(prop: str) -> float:
    from crystaljax.properties import get_property

    return float(get_property(prop).default_target)


def _task_cells() -> dict[str, tuple[str, str]]:
    """task id -> (property, cell) of the table's CrystalGym tasks."""
    return {task_id(p, c): (p, c) for p in PROPERTIES for c in CELLS}


def replaced_by_dft_runs(dft_runs) -> set[tuple[str, str, str]]:
    """(property, cell, agent) of the finished DFT learning runs
    (:mod:`crystaljax.benchmarks.dft_learning`): their short QE rows give way to them."""
    cells = _task_cells()
    return {(*cells[r.task], r.agent) for r in dft_runs if r.finished and r.task in cells}


def rows(results: Results) -> list[dict]:
    """The table's rows: runs of a CrystalGym task at its property's default target (runs
    of other targets, e.g. bench_agents' 5.0 g/cm3, are not rows), ordered by property, cell, agent."""
    cells = _task_cells()
    out = []
    for run in results.runs:
        if run.task not in cells or not math.isclose(run.target, _default_target(run.property), rel_tol=1e-6):
            continue
        steps, curve = run.curve()
        stats = run.oracle_stats or {}
        row = {"agent": run.agent, "property": run.property, "cell": cells[run.task][1],
               "oracle": run.oracle, "target": run.target, "env_steps": run.env_steps,
               "seeds": run.seeds, "eval_episodes": run.eval_episodes, "wall_s": run.wall_s,
               "steps": steps, "curve": curve.tolist(), "steps_to_90": run.steps_to_fraction(),
               "final_mean_reward": run.final_mean_reward(), "best_property": run.best_property,
               "machine": run.machine_label, "num_envs": run.config.get("num_envs"),
               "preset": dict(run.env.get("oracle_options", {})).get("preset"),
               "random": run.random["mean_reward"] if run.random else None}
        if run.oracle_stats is not None:
            row.update(dft_calls=stats.get("computed", 0), cache_hits=stats.get("cache_hits", 0),
                       dft_status_counts=dict(stats.get("by_status", {})))
        out.append(row)
    order = {p: i for i, p in enumerate(PROPERTIES)}
    return sorted(out, key=lambda r: (order[r["property"]], r["cell"], r["agent"]))


def _random_of(table: list[dict]) -> dict[tuple, float]:
    return {(r["property"], r["cell"]): r["random"] for r in table if r["random"] is not None}


def _fmt_mean(values, digits=3) -> str:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if arr.size == 0:
        return "-"
    return f"{arr[0]:.{digits}f}" if arr.size == 1 else \
        f"{arr.mean():.{digits}f} ± {arr.std():.{digits}f}"


def _fmt_steps(values) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return "never"
    text = f"{int(np.median(reached)):,}"
    return text if len(reached) == len(values) else f"{text} ({len(reached)}/{len(values)} seeds)"


def machines_line(table: list[dict]) -> str:
    """Which machine ran which rows."""
    groups: dict[str, set] = {}
    for row in table:
        groups.setdefault(row["machine"], set()).add(row["oracle"])
    return "; ".join(f"{', '.join(sorted(o))} rows on {m}" for m, o in groups.items())


def markdown(results: Results) -> str:
    """benchmarks/results.md."""
    table = rows(results)
    qe = [r for r in table if r["property"] not in IN_GRAPH]
    presets = sorted({f"`{r['preset']}`" for r in qe}) or ["-"]
    envs = "/".join(map(str, sorted({r["num_envs"] for r in qe}))) or "-"
    episodes = next((r["eval_episodes"] for r in table if r["property"] in IN_GRAPH), "-")
    lines = [
        "# Baseline results", "",
        f"`scripts/benchmark_table.py`: {machines_line(table)}; "
        f"{table[0]['seeds'] if table else '-'} seeds vmapped per row, small vocabulary. Agent "
        "settings: `configs/benchmark_agents.yaml`. Figure: `benchmarks/results.png`; raw "
        "numbers: `benchmarks/results.json`. Total wall time of the rows "
        f"{sum(r['wall_s'] for r in table) / 60:.0f} min.", "",
        "Density rows use the in-graph oracle at full length; the curve is the greedy "
        f"policy's mean reward over {episodes} episodes. QE rows use real Quantum ESPRESSO "
        f"(preset {', '.join(presets)}) at a small DFT budget (the env steps per seed in the row; "
        f"{envs} env(s) per seed, one crystal per finished episode); their curve is the mean "
        "terminal reward of the training episodes. \"Steps to 90 %\": env steps until the "
        "curve first gets 90 % of the way from its first to its best point (median over "
        "seeds). Values are mean ± std over seeds.", "",
        "| property | cell | oracle | agent | env steps | steps to 90 % | final mean reward | "
        "random policy | best property found | DFT calls | cache hits | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    random = _random_of(table)
    dft_runs = dft_learning.load_runs()
    replaced = replaced_by_dft_runs(dft_runs)
    for row in table:
        if (row["property"], row["cell"], row["agent"]) in replaced:
            continue  # a short QE row the DFT learning run of the same agent replaces
        unit = UNITS[row["property"]]
        rnd = random.get((row["property"], row["cell"]))
        lines.append(
            f"| {row['property']} (target {row['target']:g} {unit}) | {row['cell']} | "
            f"{row['oracle']} | {row['agent']} | {row['env_steps']:,} | "
            f"{_fmt_steps(row['steps_to_90'])} | {_fmt_mean(row['final_mean_reward'])} | "
            f"{'-' if rnd is None else f'{rnd:.3f}'} | "
            f"{_fmt_mean(row['best_property'])} {unit} | {row.get('dft_calls', '-')} | "
            f"{row.get('cache_hits', '-')} | {row['wall_s']:.0f} |")
    lines += ["", "## Against the paper", ""] + [f"* {c}" for c in paper_comparison(table)]
    missing = missing_rows(table)
    if missing:
        lines += ["", "Not run (agent x property x cell combinations without a row; "
                  "`scripts/benchmark_table.py --agents A --properties P --cells C` runs one): "
                  + "; ".join(missing) + "."]
    lines += mlip_rows()
    if dft_runs:
        baseline = dft_learning.random_baseline(dft_runs[0].target, dft_runs[0].beta)
        lines += ["", *dft_learning.results_rows(dft_runs, baseline)]
    return "\n".join(lines) + "\n"


def mlip_rows(path: str = MLIP_LEARNING) -> list[str]:
    """The MLIP learning rows (``scripts/bench_mlip.py --learning``, and its DFT check)
    when that benchmark has run; nothing otherwise."""
    if not os.path.exists(path):
        return []
    from crystaljax.benchmarks import mlip_learning

    results = Results.load(path)
    if not results.runs:
        return []
    return ["", *mlip_learning.results_rows(results, mlip_learning.load_verification())]


# CrystalGym's findings (REFERENCE.md: abstract and summary of arXiv 2509.23156).
PAPER_DENSITY = ("DQN and Rainbow best on density, PPO converges fast to worse policies, "
                 "SAC fails")
PAPER_DFT = {"bulk_modulus": "DQN and Rainbow best on bulk modulus",
             "band_gap": "band gap is hard for every agent (DFT underestimates gaps, many "
                         "failures)"}
SHORT_DFT_BUDGET = 1000  # env steps per seed below which a QE row cannot show learning


def paper_comparison(table: list[dict]) -> list[str]:
    """Sentences saying where the rows agree or disagree with the paper's findings; every
    number in them comes from the rows."""
    out = []
    density: dict[str, list] = {}
    for row in table:
        if row["property"] == "density":
            density.setdefault(row["agent"], []).extend(row["final_mean_reward"])
    if density:
        worst = {a: float(np.min(v)) for a, v in density.items()}
        learnt = sorted(a for a, w in worst.items() if w >= LEARNT)
        short = sorted(a for a, w in worst.items() if w < LEARNT)
        text = (f"Density (paper: {PAPER_DENSITY}). Lowest final mean reward over seeds "
                "and cells: " + ", ".join(f"{a} {w:.3f}" for a, w in sorted(worst.items()))
                + f". At least {LEARNT} in every seed and cell: " + (", ".join(learnt) or "none")
                + ".")
        verdicts = []
        if {"dqn", "rainbow"} <= set(learnt):
            verdicts.append("agrees that DQN and Rainbow learn density")
        if "ppo" in learnt:
            verdicts.append(f"disagrees on PPO, which also reaches {LEARNT} here")
        if "sac" in learnt:
            verdicts.append("disagrees on SAC, which learns here (docs/AGENTS.md says why "
                            "the original's did not)")
        if short:
            verdicts.append(f"{', '.join(short)} stay below {LEARNT}")
        out.append(text + (" The table " + "; ".join(verdicts) + "." if verdicts else ""))
    for prop, finding in PAPER_DFT.items():
        dft = [r for r in table if r["property"] == prop and r.get("dft_calls") is not None]
        if not dft:
            continue
        steps = sorted({r["env_steps"] for r in dft})
        calls = sum(r["dft_calls"] + r.get("cache_hits", 0) for r in dft)
        failed = sum(n for r in dft for st, n in r.get("dft_status_counts", {}).items()
                     if st != "OK")
        span = "-".join(map(str, (steps[0], steps[-1]) if len(steps) > 1 else steps))
        text = (f"{prop.replace('_', ' ').capitalize()} (paper: {finding}). {len(dft)} QE rows "
                f"at {span} env steps per seed, {calls} crystals evaluated, {failed} DFT "
                "failure(s)")
        text += (": too few episodes for any agent to learn, so the table neither confirms "
                 "nor refutes this finding." if steps[-1] < SHORT_DFT_BUDGET else
                 "; compare the agents' final rewards above with this finding.")
        if prop == "band_gap":
            seeds = [v for r in dft for v in r["best_property"] if v is not None]
            metals = sum(1 for v in seeds if v < 0.01)
            text += (f" In {metals} of {len(seeds)} seeds the best crystal found was a metal "
                     "(gap below 0.01 eV): with this vocabulary and these cells, crystals with a "
                     "gap are rare.")
        out.append(text)
    return out


def missing_rows(table: list[dict]) -> list[str]:
    """'property on cell: agents' for every combination of the registered agents, the
    properties and CrystalGym's cells that has no row."""
    from crystaljax.agents import list_agents

    have = {(r["agent"], r["property"], r["cell"]) for r in table}
    out = []
    for prop in PROPERTIES:
        for cell in CELLS:
            agents = [a for a in list_agents() if (a, prop, cell) not in have]
            if agents:
                out.append(f"{prop} on {cell}: {', '.join(agents)}")
    return out


def plot(results: Results, path: str) -> None:
    """Mean curve and min-max band over seeds of every row, a panel per property x cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crystaljax.agents import list_agents

    table = rows(results)
    panels = sorted({(r["property"], r["cell"]) for r in table})
    cols = max(1, min(3, len(panels)))
    nrows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    colors = dict(zip(list_agents(), ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    random = _random_of(table)
    for ax, (prop, cell) in zip(axes.flat, panels):
        for row in (r for r in table if (r["property"], r["cell"]) == (prop, cell)):
            curve = np.asarray(row["curve"], float)
            seen = ~np.isnan(curve).all(axis=0)  # QE rows: points where an episode ended
            steps, curve = np.asarray(row["steps"])[seen], curve[:, seen]
            color = colors.get(row["agent"])
            ax.plot(steps, np.nanmean(curve, axis=0), "o-" if len(steps) < 8 else "-",
                    color=color, label=row["agent"])
            ax.fill_between(steps, np.nanmin(curve, axis=0), np.nanmax(curve, axis=0),
                            color=color, alpha=0.2)
        if (prop, cell) in random:
            ax.axhline(random[(prop, cell)], color="gray", ls="--", label="random")
        ax.set_title(f"{prop} on {cell}")
        ax.set_xlabel("env steps")
        ax.set_ylabel("mean reward")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(results: Results, out: str, plot_too: bool = True) -> None:
    """``out``.json, ``out``.md and ``out``.png."""
    results.save(out + ".json")
    with open(out + ".md", "w") as f:
        f.write(markdown(results))
    if plot_too:
        plot(results, out + ".png")
        print(f"wrote {out}.json, {out}.md and {out}.png")


def merge(paths: Sequence[str], out: str) -> Results:
    """Results files of earlier runs (of either script) as one table."""
    results = Results.merge(paths)
    write_outputs(results, out)
    return results


__all__ = ["CELLS", "IN_GRAPH", "PROPERTIES", "TableOptions", "markdown", "merge",
           "missing_rows", "paper_comparison", "plot", "qe_overrides", "replaced_by_dft_runs",
           "rows", "run_row",
           "run_table", "task_id", "write_outputs"]
