"""The baseline results table: every algorithm x property x CrystalGym cell, 3 seeds vmapped.

Rows:
* density (in-graph oracle), at each agent's full benchmark length (``env_steps`` in
  configs/benchmark_agents.yaml); every ``--eval-every`` env steps the greedy policy of each
  seed plays ``--eval-episodes`` episodes;
* bulk modulus and band gap with real Quantum ESPRESSO (``--qe-preset``, default ``fast``) at
  the budget this machine can afford (``--qe-steps`` env steps per seed); no greedy evaluation
  there (it would cost DFT): the curve is the mean terminal reward of the training episodes.

Columns: env steps until the curve first gets 90 % of the way from its first point to its
best point ("steps to 90 %"), final mean reward (last point), best property value found in
training, and for DFT rows the DFT calls, cache hits and wall time. Mean and spread over seeds.

Writes ``benchmarks/results.json``, ``benchmarks/results.md`` and
``benchmarks/results.png``. One command reproduces it: ``make benchmark-table`` (or
``.venv/bin/python scripts/benchmark_table.py``; ``--help`` for subsets and budgets).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import crystaljax  # noqa: E402
from crystaljax.agents import list_agents, make_agent  # noqa: E402
from crystaljax.agents.evaluation import evaluate_policy, uniform_random_policy  # noqa: E402
from scripts._bench_common import CRITERION_REWARD as LEARNT  # noqa: E402
from scripts._bench_common import machine_description  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = os.path.join(ROOT, "configs", "benchmark_agents.yaml")
CELLS = ("perovskite", "perovskite454", "bcc4")
PROPERTIES = ("density", "bulk_modulus", "band_gap")
IN_GRAPH = ("density",)
UNITS = {"density": "g/cm3", "bulk_modulus": "GPa", "band_gap": "eV"}


def load_settings(path: str = SETTINGS) -> dict[str, dict]:
    """Per-agent benchmark settings: ``{agent: {"env_steps": int, **overrides}}`` with the
    ``common`` section merged under every agent's own (nested dicts merged key by key)."""
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    common = raw.pop("common", {}) or {}
    out = {}
    for name, own in raw.items():
        merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in common.items()}
        for key, value in (own or {}).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            else:
                merged[key] = value
        if "env_steps" not in merged:
            raise SystemExit(f"{path}: agent {name!r} has no env_steps")
        out[name] = merged
    return out


def task_id(prop: str, cell: str) -> str:
    return f"{prop.replace('_', '-')}-{cell}-small-v0"


def steps_to_fraction(steps: list[int], values: list[float], fraction: float = 0.9) -> int | None:
    """First step where ``values`` gets ``fraction`` of the way from values[0] to max(values)."""
    first, best = values[0], max(values)
    if not np.isfinite(best) or best <= first:
        return None
    goal = first + fraction * (best - first)
    return next(s for s, v in zip(steps, values) if v >= goal)


def run_cell(name: str, prop: str, cell: str, settings: dict, args) -> dict:
    """Train ``args.seeds`` seeds vmapped on one task and return its row."""
    in_graph = prop in IN_GRAPH
    overrides = {k: v for k, v in settings.items() if k != "env_steps"}
    env_steps = int(settings["env_steps"]) if in_graph else args.qe_steps
    env_kwargs = {} if in_graph else {
        "oracle": "qe", "oracle_options": {"preset": args.qe_preset, "time_limit": args.qe_time_limit,
                                           "workers": args.qe_workers}}
    env, params = crystaljax.make(task_id(prop, cell), **env_kwargs)
    if not in_graph:  # small batches: DFT runs a crystal per finished episode
        overrides = {**overrides, "num_envs": args.qe_num_envs}
        if name == "ppo":  # rollouts that fit the DFT budget: one minibatch per rollout
            per_env = max(1, args.qe_steps // args.qe_num_envs)
            overrides.update(num_steps=min(int(overrides.get("num_steps", 32)), per_env),
                             num_minibatches=1)
        else:
            overrides["learning_starts"] = 0
        overrides = {k: v for k, v in overrides.items()
                     if k not in ("buffer_size",) or v >= args.qe_num_envs}
    agent = make_agent(name, env, params, {**overrides, "total_env_steps": env_steps})
    per_iter = agent.config.env_steps_per_iteration
    every = args.eval_every if in_graph else max(per_iter, env_steps // 4)
    chunk_its = max(1, every // per_iter)
    num_chunks = max(1, env_steps // (chunk_its * per_iter))
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.seeds)
    states = jax.jit(jax.vmap(agent.init))(keys)
    chunk = jax.jit(jax.vmap(lambda s, start: agent.run_iterations(s, chunk_its, start),
                             in_axes=(0, None)))
    evaluate = jax.jit(jax.vmap(lambda p, k: agent.evaluate_params(p, k, args.eval_episodes),
                                in_axes=(0, None)))
    eval_key = jax.random.PRNGKey(12345)
    t0 = time.perf_counter()
    steps, curve = [], []
    if in_graph:
        steps.append(0)
        curve.append(np.asarray(evaluate(agent.network_params(states), eval_key)["mean_reward"]))
    for i in range(num_chunks):
        states, metrics = chunk(states, jnp.int32(i * chunk_its))
        steps.append((i + 1) * chunk_its * per_iter)
        if in_graph:
            point = evaluate(agent.network_params(states), eval_key)["mean_reward"]
        else:
            m = jax.tree.map(np.asarray, metrics)
            episodes = m["episodes_done"].sum(axis=1)
            point = np.where(episodes > 0, m["terminal_reward_sum"].sum(axis=1)
                             / np.maximum(episodes, 1), np.nan)
        curve.append(np.asarray(point))
        print(f"  {name:8s} {prop:12s} {cell:14s} step {steps[-1]:>6}: "
              f"{np.round(curve[-1], 4)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    wall = time.perf_counter() - t0
    curve_arr = np.stack(curve, axis=1)  # [seeds, points]
    if not in_graph:  # the first point is the first chunk of training episodes
        if curve_arr.shape[1] > 1:
            steps, curve_arr = steps[1:], curve_arr[:, 1:]
    best_prop = np.asarray(states.best.property, float)
    row = {
        "agent": name, "property": prop, "cell": cell, "task": task_id(prop, cell),
        "oracle": "in-graph" if in_graph else f"QE ({args.qe_preset})",
        "env_steps": env_steps, "seeds": args.seeds, "wall_s": wall,
        "steps": steps, "curve": curve_arr.tolist(),
        "steps_to_90": [steps_to_fraction(steps, list(c)) for c in curve_arr],
        "final_mean_reward": curve_arr[:, -1].tolist(),
        "best_property": best_prop.tolist(),
        "best_reward": np.asarray(states.best.reward, float).tolist(),
        "target": float(params.reward.target),
        "machine": machine_description(), "backend": jax.default_backend(),
    }
    if not in_graph:
        from crystaljax.training.run import _oracle_counters

        row.update(_oracle_counters(env))
        bridge = env.host_bridge
        row["dft_status_counts"] = {str(k): int(v) for k, v in bridge.status_counts.items()}
        bridge.oracle.close() if hasattr(bridge.oracle, "close") else None
    return row


def random_reward(prop: str, cell: str, episodes: int = 4096) -> float:
    """Mean terminal reward of the uniform random policy (in-graph tasks only)."""
    env, params = crystaljax.make(task_id(prop, cell))
    result = jax.jit(lambda k: evaluate_policy(env, params, uniform_random_policy, k,
                                               episodes))(jax.random.PRNGKey(7))
    return float(result["mean_reward"])


def _fmt_mean(values, digits=3) -> str:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if arr.size == 0:
        return "-"
    if arr.size == 1:
        return f"{arr[0]:.{digits}f}"
    return f"{arr.mean():.{digits}f} ± {arr.std():.{digits}f}"


def _fmt_steps(values) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return "never"
    text = f"{int(np.median(reached)):,}"
    return text if len(reached) == len(values) else f"{text} ({len(reached)}/{len(values)} seeds)"


def machines_line(results: dict) -> str:
    """Which machine ran which rows (rows merged from runs on different machines)."""
    groups: dict[str, list[str]] = {}
    for row in results["rows"]:
        machine = row.get("machine", results["machine"])
        backend = row.get("backend", "cpu")
        groups.setdefault(f"{machine} (JAX {backend})", []).append(row["oracle"])
    parts = [f"{', '.join(sorted(set(oracles)))} rows on {machine}"
             for machine, oracles in groups.items()]
    return "; ".join(parts)


def markdown(results: dict) -> str:
    lines = [
        "# Baseline results",
        "",
        f"`scripts/benchmark_table.py`: {machines_line(results)}; JAX "
        f"{results['jax_version']}; {results['seeds']} seeds vmapped per row, small "
        "vocabulary. Agent settings: "
        "`configs/benchmark_agents.yaml`. Figure: `benchmarks/results.png`; raw numbers: "
        "`benchmarks/results.json`. Total wall time "
        f"{results['wall_s'] / 60:.0f} min.",
        "",
        "Density rows use the in-graph oracle at full length; the curve is the greedy "
        f"policy's mean reward over {results['eval_episodes']} episodes. QE rows use real "
        f"Quantum ESPRESSO (preset `{results['qe_preset']}`) at a small DFT budget (the env "
        f"steps per seed in the row; {results['qe_num_envs']} env(s) per seed, one crystal per "
        "finished episode); their curve is the mean terminal reward of the training "
        "episodes. \"Steps to 90 %\": env steps until the curve first gets 90 % of the way "
        "from its first to its best point (median over seeds). Values are mean ± std over seeds.",
        "",
        "| property | cell | oracle | agent | env steps | steps to 90 % | final mean reward | "
        "random policy | best property found | DFT calls | cache hits | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        unit = UNITS[row["property"]]
        rnd = results["random"].get(f"{row['property']}/{row['cell']}")
        lines.append(
            f"| {row['property']} (target {row['target']:g} {unit}) | {row['cell']} | "
            f"{row['oracle']} | {row['agent']} | {row['env_steps']:,} | "
            f"{_fmt_steps(row['steps_to_90'])} | {_fmt_mean(row['final_mean_reward'])} | "
            f"{'-' if rnd is None else f'{rnd:.3f}'} | "
            f"{_fmt_mean(row['best_property'])} {unit} | {row.get('dft_calls', '-')} | "
            f"{row.get('cache_hits', '-')} | {row['wall_s']:.0f} |")
    lines += ["", "## Against the paper", ""] + [f"* {c}" for c in paper_comparison(results)]
    missing = missing_rows(results)
    if missing:
        lines += ["", "Not run (agent x property x cell combinations without a row; "
                  "`scripts/benchmark_table.py --agents A --properties P --cells C` runs one): "
                  + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


# CrystalGym's findings (REFERENCE.md: abstract and summary of arXiv 2509.23156).
PAPER_DENSITY = ("DQN and Rainbow best on density, PPO converges fast to worse policies, "
                 "SAC fails")
PAPER_DFT = {"bulk_modulus": "DQN and Rainbow best on bulk modulus",
             "band_gap": "band gap is hard for every agent (DFT underestimates gaps, many "
                         "failures)"}
SHORT_DFT_BUDGET = 1000  # env steps per seed below which a QE row cannot show learning


def paper_comparison(results: dict) -> list[str]:
    """Sentences saying where the rows agree or disagree with the paper's findings; every
    number in them comes from ``results``."""
    rows = results["rows"]
    out = []
    density = {}
    for row in rows:
        if row["property"] == "density":
            density.setdefault(row["agent"], []).extend(row["final_mean_reward"])
    if density:
        worst = {a: float(np.min(v)) for a, v in density.items()}
        learnt = sorted(a for a, w in worst.items() if w >= LEARNT)
        short = sorted(a for a, w in worst.items() if w < LEARNT)
        text = (f"Density (paper: {PAPER_DENSITY}). Lowest final mean reward over seeds "
                "and cells: " + ", ".join(f"{a} {w:.3f}" for a, w in sorted(worst.items()))
                + f". At least {LEARNT} in every seed and cell: "
                + (", ".join(learnt) or "none") + ".")
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
        dft = [r for r in rows if r["property"] == prop and r.get("dft_calls") is not None]
        if not dft:
            continue
        steps = sorted({r["env_steps"] for r in dft})
        calls = sum(r["dft_calls"] + r.get("cache_hits", 0) for r in dft)
        failed = sum(n for r in dft for st, n in r.get("dft_status_counts", {}).items()
                     if st != "OK")
        text = (f"{prop.replace('_', ' ').capitalize()} (paper: {finding}). {len(dft)} QE rows "
                f"at {'-'.join(map(str, (steps[0], steps[-1]) if len(steps) > 1 else steps))} "
                f"env steps per seed, {calls} crystals evaluated, {failed} DFT failure(s)")
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


def missing_rows(results: dict) -> list[str]:
    """'property on cell: agents' for every combination of the registered agents, the
    properties and CrystalGym's cells that has no row."""
    have = {(r["agent"], r["property"], r["cell"]) for r in results["rows"]}
    out = []
    for prop in PROPERTIES:
        for cell in CELLS:
            agents = [a for a in list_agents() if (a, prop, cell) not in have]
            if agents:
                out.append(f"{prop} on {cell}: {', '.join(agents)}")
    return out


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["property"], r["cell"]) for r in results["rows"]})
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colors = dict(zip(list_agents(), ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for ax, (prop, cell) in zip(axes.flat, panels):
        for row in results["rows"]:
            if (row["property"], row["cell"]) != (prop, cell):
                continue
            curve = np.asarray(row["curve"], float)
            seen = ~np.isnan(curve).all(axis=0)  # QE rows: points where an episode ended
            steps, curve = np.asarray(row["steps"])[seen], curve[:, seen]
            ax.plot(steps, np.nanmean(curve, axis=0), "o-" if len(steps) < 8 else "-",
                    color=colors.get(row["agent"]), label=row["agent"])
            ax.fill_between(steps, np.nanmin(curve, axis=0), np.nanmax(curve, axis=0),
                            color=colors.get(row["agent"]), alpha=0.2)
        rnd = results["random"].get(f"{prop}/{cell}")
        if rnd is not None:
            ax.axhline(rnd, color="gray", ls="--", label="random")
        ax.set_title(f"{prop} on {cell}")
        ax.set_xlabel("env steps")
        ax.set_ylabel("mean reward")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=None,
                        help="default: every agent in configs/benchmark_agents.yaml")
    parser.add_argument("--properties", nargs="+", default=list(PROPERTIES), choices=PROPERTIES)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed the seed keys are split from")
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--eval-episodes", type=int, default=256)
    parser.add_argument("--env-steps", type=int, default=None,
                        help="override every agent's in-graph run length (quick checks)")
    parser.add_argument("--qe-steps", type=int, default=20,
                        help="env steps per seed of a QE row (the DFT budget)")
    parser.add_argument("--qe-num-envs", type=int, default=2)
    parser.add_argument("--qe-preset", default="fast")
    parser.add_argument("--qe-workers", type=int, default=2)
    parser.add_argument("--qe-time-limit", type=float, default=300.0)
    parser.add_argument("--settings", default=SETTINGS)
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="train nothing: merge results files of earlier runs into --out "
                             "(files of scripts/bench_agents.py give the perovskite density rows)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"),
                        help="path prefix of the .json, .md and .png outputs")
    return parser.parse_args(argv)


def from_bench_agents(part: dict) -> dict:
    """A results file of scripts/bench_agents.py as table rows: its target-3.0 runs are the
    density rows of the 'perovskite' cell (same task, seeds, evaluation key and episodes)."""
    entry = part["targets"].get("3.0")
    if entry is None:
        raise SystemExit("bench_agents results without target 3.0 cannot give table rows")
    rows = []
    for name, res in entry["agents"].items():
        steps = [c["env_steps"] for c in res["curve"]]
        curve = np.asarray([c["mean_reward"] for c in res["curve"]], float).T  # [seeds, points]
        rows.append({
            "agent": name, "property": "density", "cell": "perovskite",
            "task": task_id("density", "perovskite"), "oracle": "in-graph",
            "env_steps": res["env_steps"], "seeds": part["seeds"],
            "wall_s": res["compile_s"] + res["train_s"], "steps": steps,
            "curve": curve.tolist(),
            "steps_to_90": [steps_to_fraction(steps, list(c)) for c in curve],
            "final_mean_reward": curve[:, -1].tolist(),
            "best_property": [s["best_property_in_training"] for s in res["seeds"]],
            "best_reward": [s["best_reward_in_training"] for s in res["seeds"]],
            "target": 3.0, "machine": part["machine"], "backend": part.get("backend", "cpu"),
        })
    return {"machine": part["machine"], "jax_version": part["jax_version"],
            "seeds": part["seeds"], "eval_episodes": part["eval_episodes"],
            "random": {"density/perovskite": entry["random"]["mean_reward"]}, "rows": rows,
            "wall_s": sum(r["wall_s"] for r in rows)}


def merge_results(paths: list[str]) -> dict:
    """Combine results files (e.g. density rows from one machine, QE rows from another):
    rows of the same (agent, property, cell) in a later file replace earlier ones; the
    header (QE budget, seeds) comes from the last file that has QE rows, else the first."""
    parts = []
    for path in paths:
        with open(path) as f:
            part = json.load(f)
        parts.append(from_bench_agents(part) if "targets" in part else part)
    with_qe = [p for p in parts if any(r["property"] not in IN_GRAPH for r in p["rows"])]
    header = with_qe[-1] if with_qe else next((p for p in parts if "qe_preset" in p), parts[0])
    merged = {"qe_preset": "-", "qe_steps": 0, "qe_num_envs": 0, **header}
    rows: dict[tuple, dict] = {}
    merged["random"], merged["wall_s"] = {}, 0.0
    for part in parts:
        if part["seeds"] != merged["seeds"]:
            raise SystemExit(f"cannot merge runs with {part['seeds']} and {merged['seeds']} seeds")
        for row in part["rows"]:
            row.setdefault("machine", part["machine"])
            rows[(row["agent"], row["property"], row["cell"])] = row
        merged["random"].update(part["random"])
        merged["wall_s"] += part.get("wall_s", 0.0)
    order = {p: i for i, p in enumerate(PROPERTIES)}
    merged["rows"] = sorted(rows.values(), key=lambda r: (order[r["property"]], r["cell"],
                                                          r["agent"]))
    return merged


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.merge:
        results = merge_results(args.merge)
        _write(results, args.out)
        plot(results, args.out + ".png")
        print(f"wrote {args.out}.json, {args.out}.md and {args.out}.png")
        return results
    settings = load_settings(args.settings)
    agents = args.agents or list(settings)
    unknown = [a for a in agents if a not in settings or a not in list_agents()]
    if unknown:
        raise SystemExit(f"no benchmark settings or no such agent: {unknown}; "
                         f"settings for {sorted(settings)}, agents {list_agents()}")
    if args.env_steps:
        settings = {k: {**v, "env_steps": args.env_steps} for k, v in settings.items()}
    results = {"machine": machine_description(), "jax_version": jax.__version__,
               "seeds": args.seeds, "eval_episodes": args.eval_episodes,
               "qe_preset": args.qe_preset, "qe_steps": args.qe_steps,
               "qe_num_envs": args.qe_num_envs, "settings": settings, "random": {}, "rows": []}
    t0 = time.perf_counter()
    for prop in args.properties:
        for cell in args.cells:
            if prop in IN_GRAPH:
                results["random"][f"{prop}/{cell}"] = random_reward(prop, cell)
            for name in agents:
                results["rows"].append(run_cell(name, prop, cell, settings[name], args))
                results["wall_s"] = time.perf_counter() - t0
                _write(results, args.out)  # partial results survive an interrupted run
    results["wall_s"] = time.perf_counter() - t0
    _write(results, args.out)
    plot(results, args.out + ".png")
    print(f"wrote {args.out}.json, {args.out}.md and {args.out}.png")
    return results


def _write(results: dict, prefix: str) -> None:
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    with open(prefix + ".json", "w") as f:
        json.dump(results, f, indent=1, default=float)
    with open(prefix + ".md", "w") as f:
        f.write(markdown(results))


if __name__ == "__main__":
    main()
