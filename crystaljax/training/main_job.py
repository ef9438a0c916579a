"""The main job (``make demo``): learn a relaxed property with the in-graph CHGNet, then
recompute the best crystals with Quantum ESPRESSO.

1. ``crystaljax train CONFIG`` (default ``configs/main_job.yaml``): an agent learns inside the
   jitted loop, the reward computed by the in-graph CHGNet oracle;
2. the greedy policy against the uniform random policy on the same task (episodes of each);
3. ``crystaljax verify RUN_DIR --top K --oracle qe`` on the run's best crystals;
4. both tables printed, with the run directory's ``report.html``.

Everything the job measured goes to ``RUN_DIR/main_job.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from crystaljax.config import ConfigError

DEFAULT_CONFIG = "configs/main_job.yaml"


def greedy_against_random(run_dir: str, config, episodes: int, summary: dict) -> dict:
    """The run's final greedy evaluation beside the uniform random policy's (``episodes``
    episodes each; the greedy numbers come from the run's own final evaluation)."""
    import crystaljax
    from crystaljax.training.sweep import random_baseline

    env, params = crystaljax.make(config.env)
    with env:
        random = random_baseline(env, params, episodes, seed=config.train.seed + 1)
    return {
        "greedy_mean_reward": summary.get("eval_mean_reward"),
        "greedy_median_abs_error": summary.get("eval_median_abs_error"),
        "greedy_episodes": summary.get("eval_episodes"),
        "random_mean_reward": random["mean_reward"],
        "random_median_abs_error": random["median_abs_error"],
        "random_episodes": random["episodes"],
        "unit": env.property.unit,
        "target": float(params.reward.target),
    }


def format_comparison(c: dict) -> str:
    margin = c["greedy_mean_reward"] - c["random_mean_reward"]
    lines = [
        f"{'policy':8s} {'episodes':>8s} {'mean reward':>12s} {'median |error| (' + c['unit'] + ')':>24s}",
        f"{'greedy':8s} {c['greedy_episodes']:8d} {c['greedy_mean_reward']:12.3f} "
        f"{c['greedy_median_abs_error']:24.2f}",
        f"{'random':8s} {c['random_episodes']:8d} {c['random_mean_reward']:12.3f} "
        f"{c['random_median_abs_error']:24.2f}",
        f"greedy - random: {margin:+.3f} mean reward (target {c['target']:g} {c['unit']})",
    ]
    return "\n".join(lines)


def run(config_path: str = DEFAULT_CONFIG, top: int = 3, oracle: str = "qe",
        preset: str | None = None, relax: str | None = "volume", random_episodes: int = 64,
        workers: int = 2, progress: bool = True) -> dict:
    """Train, compare with the random policy, verify the top crystals; returns the record."""
    from crystaljax.training.config import load_run_config
    from crystaljax.training.run import train
    from crystaljax.training.verify import format_table, verify_run

    start = time.perf_counter()
    config = load_run_config(config_path)
    summary = train(config, progress=progress)
    run_dir = summary["run_dir"]
    trained_s = time.perf_counter() - start
    comparison = greedy_against_random(run_dir, config, random_episodes, summary)
    print("\nGreedy policy against the random policy (in-graph CHGNet rewards):")
    print(format_comparison(comparison))
    options = None
    if oracle == "qe":  # QE searches the same lattice range as the run's CHGNet oracle
        preset = preset or "fast"
        searched = dict(config.env.oracle_options or {})
        options = {"workers": workers, "recipe": {"relax_range": [
            float(searched.get("min_scale", 0.8)), float(searched.get("max_scale", 1.3))]}}
    verified = verify_run(run_dir, top=top, oracle=oracle, preset=preset, relax=relax,
                          options=options, progress=print if progress else None)
    how = ", ".join(x for x in (preset, relax and f"relax {relax}") if x)
    print(f"\nTop {top} crystals recomputed with {oracle}" + (f" ({how})" if how else "") + ":")
    print(format_table(verified))
    record = {"run_dir": run_dir, "train_seconds": round(trained_s, 1),
              "seconds": round(time.perf_counter() - start, 1), "comparison": comparison,
              "verify_summary": verified.get("summary"), "summary": summary}
    with open(os.path.join(run_dir, "main_job.json"), "w") as f:
        json.dump(record, f, indent=2, default=str)
    print(f"\nreport: {os.path.join(run_dir, 'report.html')}   "
          f"(main job: {record['seconds']:.0f} s)")
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--oracle", default="qe")
    parser.add_argument("--preset", default=None, help="QE preset (default fast)")
    parser.add_argument("--relax", default="volume", choices=("none", "volume", "full"))
    parser.add_argument("--random-episodes", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        run(args.config, args.top, args.oracle, args.preset, args.relax, args.random_episodes,
            args.workers, progress=not args.quiet)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"main job: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
