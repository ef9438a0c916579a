"""Benchmark the agents (DQN, Rainbow, PPO, SAC) on the in-graph density task.

Task: ``density-perovskite-small-v0`` (CrystalGym's 5-site cubic cell, a = 4.2748 Å, small
vocabulary) with targets 3.0 and 5.0 g/cm3. Each agent runs for its ``env_steps`` of
``configs/benchmark_agents.yaml`` (the budgets: 20k env steps for DQN and Rainbow, 50k for
PPO and SAC). For every (target, agent) the seeds train vmapped in one jitted run; every
``--eval-every`` env steps the greedy policy of each seed
plays ``--eval-episodes`` episodes (random start sites) and we record the mean terminal
reward and the median |density - target|. The criterion is mean reward >= 0.99 with
median error <= 0.05 g/cm3. A uniform random policy is the baseline.

Writes ``benchmarks/agents.json``, ``benchmarks/agents.png`` and the "agents" section of
BENCHMARKS.md. Run: ``.venv/bin/python scripts/bench_agents.py`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import crystaljax  # noqa: E402
from crystaljax.agents import make_agent  # noqa: E402
from crystaljax.agents.evaluation import evaluate_policy, uniform_random_policy  # noqa: E402
from scripts._bench_common import (  # noqa: E402
    CRITERION_ERROR,
    CRITERION_REWARD,
    backend_name,
    machine_description,
    replace_table,
)
from scripts.benchmark_table import SETTINGS, load_settings  # noqa: E402

TASK = "density-perovskite-small-v0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=None,
                        help="default: every agent with settings in --settings")
    parser.add_argument("--targets", nargs="+", type=float, default=[3.0, 5.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=None,
                        help="env steps per seed (default: the agent's env_steps in --settings)")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=256)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="agent config overrides (JSON values), applied to every agent on "
                             "top of --settings")
    parser.add_argument("--settings", default=SETTINGS,
                        help="YAML of per-agent benchmark settings ('none' = package defaults)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "agents"),
                        help="path prefix of the .json and .png outputs")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="train nothing: merge results files of earlier runs (e.g. one "
                             "process per agent) into --out and BENCHMARKS.md")
    parser.add_argument("--no-markdown", action="store_true",
                        help="do not update BENCHMARKS.md (exploratory runs)")
    return parser.parse_args(argv)


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def random_baseline(env, params, key, num_episodes: int) -> dict:
    """Mean reward and median |error| of the uniform random policy."""
    result = jax.jit(lambda k: evaluate_policy(env, params, uniform_random_policy, k,
                                               num_episodes))(key)
    return {"mean_reward": float(result["mean_reward"]),
            "median_abs_error": float(result["median_abs_error"]),
            "episodes": num_episodes}


def run_agent(name: str, env, params, overrides: dict, args, env_steps: int) -> dict:
    """Train ``args.seeds`` seeds vmapped for ``env_steps`` each, evaluating between chunks."""
    config = dict(overrides, total_env_steps=env_steps)
    agent = make_agent(name, env, params, config)
    cfg = agent.config
    per_iteration = cfg.env_steps_per_iteration  # num_envs; a whole rollout for PPO
    if args.eval_every % per_iteration:
        raise SystemExit(f"--eval-every {args.eval_every} is not a multiple of the env steps "
                         f"of one {name} iteration ({per_iteration})")
    chunk_iterations = args.eval_every // per_iteration
    num_chunks = env_steps // args.eval_every
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    states = jax.jit(jax.vmap(agent.init))(keys)
    chunk = jax.jit(jax.vmap(lambda s, start: agent.run_iterations(s, chunk_iterations, start),
                             in_axes=(0, None)))
    evaluate = jax.jit(jax.vmap(lambda p, k: agent.evaluate_params(p, k, args.eval_episodes),
                                in_axes=(0, None)))

    t0 = time.perf_counter()
    chunk = chunk.lower(states, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t0
    eval_key = jax.random.PRNGKey(12345)
    evaluate(states.params, eval_key)  # compile outside the timings

    def record(states, steps):
        result = evaluate(states.params, eval_key)
        return {"env_steps": steps,
                "mean_reward": np.asarray(result["mean_reward"]).tolist(),
                "median_abs_error": np.asarray(result["median_abs_error"]).tolist()}

    curve = [record(states, 0)]
    train_s = 0.0
    losses = []
    skipped = np.zeros(args.seeds, np.int64)  # non-finite updates skipped (replay agents)
    for i in range(num_chunks):
        t0 = time.perf_counter()
        states, metrics = chunk(states, jnp.int32(i * chunk_iterations))
        jax.block_until_ready(states)
        train_s += time.perf_counter() - t0
        losses.append(np.nanmean(np.asarray(metrics["loss"]), axis=1).tolist())
        if "skipped_updates" in metrics:
            skipped += np.asarray(metrics["skipped_updates"]).sum(axis=1)
        curve.append(record(states, (i + 1) * args.eval_every))
        print(f"  {name} step {curve[-1]['env_steps']:>6}: reward "
              f"{np.round(curve[-1]['mean_reward'], 4)} median|err| "
              f"{np.round(curve[-1]['median_abs_error'], 4)} ({train_s:.0f} s)", flush=True)

    seeds = []
    for s in range(args.seeds):
        reached = [c["env_steps"] for c in curve
                   if c["mean_reward"][s] >= CRITERION_REWARD
                   and c["median_abs_error"][s] <= CRITERION_ERROR]
        seeds.append({"seed": s, "steps_to_criterion": reached[0] if reached else None,
                      "final_mean_reward": curve[-1]["mean_reward"][s],
                      "final_median_abs_error": curve[-1]["median_abs_error"][s],
                      "best_reward_in_training": float(states.best.reward[s]),
                      "best_property_in_training": float(states.best.property[s]),
                      "skipped_updates": int(skipped[s])})
    total_steps = args.seeds * env_steps
    return {"config": _jsonable(dataclasses.asdict(cfg)), "overrides": overrides,
            "env_steps": env_steps,
            "compile_s": compile_s, "train_s": train_s,
            "env_steps_per_s": total_steps / train_s, "curve": curve, "seeds": seeds,
            "mean_loss_per_chunk": losses}


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(results["targets"])
    fig, axes = plt.subplots(2, len(targets), figsize=(6 * len(targets), 7), squeeze=False)
    colors = {"dqn": "tab:blue", "rainbow": "tab:red", "ppo": "tab:green", "sac": "tab:purple"}
    for j, target in enumerate(targets):
        entry = results["targets"][target]
        for name, res in entry["agents"].items():
            steps = [c["env_steps"] for c in res["curve"]]
            for s in range(len(res["seeds"])):
                label = name if s == 0 else None
                axes[0, j].plot(steps, [c["mean_reward"][s] for c in res["curve"]],
                                color=colors.get(name), alpha=0.8, label=label)
                axes[1, j].plot(steps, [c["median_abs_error"][s] for c in res["curve"]],
                                color=colors.get(name), alpha=0.8, label=label)
        rnd = entry["random"]
        axes[0, j].axhline(rnd["mean_reward"], color="gray", ls="--", label="random")
        axes[1, j].axhline(rnd["median_abs_error"], color="gray", ls="--", label="random")
        axes[0, j].axhline(CRITERION_REWARD, color="k", ls=":", lw=0.8)
        axes[1, j].axhline(CRITERION_ERROR, color="k", ls=":", lw=0.8)
        axes[0, j].set_title(f"density target {target} g/cm3")
        axes[0, j].set_ylabel("greedy mean terminal reward")
        axes[1, j].set_ylabel("greedy median |density error| (g/cm3)")
        axes[1, j].set_yscale("log")
        axes[1, j].set_xlabel("env steps")
        axes[0, j].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_machine(results: dict) -> str:
    """'<machine> (JAX <version>, <backend>)' of one results file."""
    return (f"{results['machine']} (JAX {results['jax_version']}, "
            f"{results.get('backend', 'cpu')})")


def machines_line(results: dict) -> str:
    """The run's machine, or which agents ran on which machine (merged results)."""
    default = run_machine(results)
    groups: dict[str, list[str]] = {}
    for entry in results["targets"].values():
        for name, res in entry["agents"].items():
            agents = groups.setdefault(res.get("machine", default), [])
            if name not in agents:
                agents.append(name)
    if len(groups) <= 1:
        return next(iter(groups), default)
    return "; ".join(f"{', '.join(agents)} on {machine}" for machine, agents in groups.items())


def markdown(results: dict) -> str:
    lines = [
        "## Agents on the density task (`scripts/bench_agents.py`)",
        "",
        f"`scripts/bench_agents.py` on {machines_line(results)}. Task `{TASK}`; "
        f"{results['seeds']} seeds vmapped per run; greedy evaluation "
        f"on {results['eval_episodes']} episodes every {results['eval_every']:,} env steps. "
        f"Criterion: mean reward >= {CRITERION_REWARD} and median |error| <= "
        f"{CRITERION_ERROR} g/cm3. Learning curves: `benchmarks/agents.png`; raw numbers: "
        "`benchmarks/agents.json`.",
        "",
        "| target (g/cm3) | agent | env steps | seeds meeting the criterion | median env steps "
        "to criterion | final mean reward (mean over seeds) | best final median abs error "
        "(g/cm3) |",
        "|---|---|---|---|---|---|---|",
    ]
    for target, entry in results["targets"].items():
        for name, res in entry["agents"].items():
            reached = [s["steps_to_criterion"] for s in res["seeds"]
                       if s["steps_to_criterion"] is not None]
            final = [s["final_mean_reward"] for s in res["seeds"]]
            err = [s["final_median_abs_error"] for s in res["seeds"]]
            lines.append(
                f"| {target} | {name} | {res['env_steps']:,} | {len(reached)}/{len(res['seeds'])} "
                f"| {f'{int(np.median(reached)):,}' if reached else '-'} | "
                f"{np.mean(final):.4f} | {min(err):.4f} |")
    lines += [
        "",
        "Per seed (the uniform random policy's numbers over 4096 episodes for comparison):",
        "",
        "| target (g/cm3) | policy | seed | env steps to criterion | final mean reward | "
        "final median abs error (g/cm3) | train env steps/s (all seeds) | compile (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for target, entry in results["targets"].items():
        rnd = entry["random"]
        lines.append(f"| {target} | uniform random | - | never | {rnd['mean_reward']:.3f} | "
                     f"{rnd['median_abs_error']:.3f} | - | - |")
        for name, res in entry["agents"].items():
            for s in res["seeds"]:
                reached = s["steps_to_criterion"]
                lines.append(
                    f"| {target} | {name} | {s['seed']} | "
                    f"{'not reached' if reached is None else f'{reached:,}'} | "
                    f"{s['final_mean_reward']:.4f} | {s['final_median_abs_error']:.4f} | "
                    f"{res['env_steps_per_s']:.0f} | {res['compile_s']:.0f} |")
    lines += ["", f"Agent settings ({results['settings_file'] or 'package defaults'}; each "
              "agent's overrides of its package defaults, command-line ones included):", ""]
    for name, res in next(iter(results["targets"].values()))["agents"].items():
        lines.append(f"* {name}, {res['env_steps']:,} env steps: {json.dumps(res['overrides'])}")
    return "\n".join(lines)


def merge_results(paths: list[str]) -> dict:
    """Combine results files of runs of single agents (e.g. one process per agent) into one:
    the first file's header, every file's agents under their targets."""
    merged = None
    for path in paths:
        with open(path) as f:
            part = json.load(f)
        for entry in part["targets"].values():
            for res in entry["agents"].values():
                res.setdefault("machine", run_machine(part))
        if merged is None:
            merged = part
            continue
        for key in ("task", "seeds", "eval_every", "eval_episodes"):
            if part[key] != merged[key]:
                raise SystemExit(f"{path}: {key} {part[key]!r} differs from {merged[key]!r}")
        for target, entry in part["targets"].items():
            merged["targets"].setdefault(target, entry)["agents"].update(entry["agents"])
    return merged


def settings_source(results: dict, settings_path: str) -> str | None:
    """Name the settings file of merged runs: ``settings_path`` (relative to the repo) when
    every agent's recorded overrides are exactly what that file gives it (the runs may have
    read a copy of it), else a pointer to the per-agent list."""
    settings = {} if settings_path == "none" else load_settings(settings_path)
    for entry in results["targets"].values():
        for name, res in entry["agents"].items():
            own = dict(settings.get(name, {}))
            own.pop("env_steps", None)
            if own != res["overrides"]:
                return "see each agent below; they differ from the settings file"
    return None if settings_path == "none" else os.path.relpath(settings_path, ROOT)


def write_outputs(results: dict, out: str, markdown_too: bool) -> None:
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    plot(results, out + ".png")
    if markdown_too:
        replace_table(os.path.join(ROOT, "BENCHMARKS.md"), "agents", markdown(results))
    print(f"wrote {out}.json and {out}.png")


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.merge:
        results = merge_results(args.merge)
        results["settings_file"] = settings_source(results, args.settings)
        write_outputs(results, args.out, not args.no_markdown)
        return results
    overrides = parse_overrides(args.set)
    settings = {} if args.settings == "none" else load_settings(args.settings)
    agents = args.agents or (list(settings) if settings else ["dqn", "rainbow", "ppo", "sac"])
    results = {"task": TASK, "machine": machine_description(), "jax_version": jax.__version__,
               "backend": backend_name(),
               "seeds": args.seeds, "eval_every": args.eval_every,
               "eval_episodes": args.eval_episodes, "overrides": overrides,
               "settings_file": None if args.settings == "none"
               else os.path.relpath(args.settings, ROOT),
               "criterion": {"mean_reward": CRITERION_REWARD,
                             "median_abs_error": CRITERION_ERROR},
               "targets": {}}
    for target in args.targets:
        env, params = crystaljax.make(TASK, target=target)
        entry = {"random": random_baseline(env, params, jax.random.PRNGKey(7), 4096),
                 "agents": {}}
        print(f"target {target}: random policy {entry['random']}", flush=True)
        for name in agents:
            own = dict(settings.get(name, {}))
            default_steps = int(own.pop("env_steps", 20_000))
            env_steps = args.env_steps or default_steps
            entry["agents"][name] = run_agent(name, env, params, {**own, **overrides}, args,
                                              env_steps)
            res = entry["agents"][name]
            print(f"  {name}: compile {res['compile_s']:.1f} s, "
                  f"{res['env_steps_per_s']:.0f} env steps/s, "
                  f"steps to criterion {[s['steps_to_criterion'] for s in res['seeds']]}",
                  flush=True)
        results["targets"][str(target)] = entry
    write_outputs(results, args.out, not args.no_markdown)
    return results


if __name__ == "__main__":
    main()
