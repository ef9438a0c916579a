"""Env throughput: jit + vmap + lax.scan vs. the Gymnasium adapter in a Python loop.

Writes benchmarks/env_throughput.json and rewrites the env table in BENCHMARKS.md.
Random actions, in-graph density oracle (task density-perovskite-small-v0).

Two jitted variants are timed: "env only" (XLA may drop observation fields the
random policy does not read) and "obs consumed" (every observation field is reduced
into the carry, so the full observation is built each step).

    python scripts/bench_env.py [--envs 1 64 1024 4096] [--steps 200] [--gym-steps 2000]
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import crystaljax  # noqa: E402
from crystaljax.wrappers import GymnasiumEnv  # noqa: E402
from scripts._bench_common import machine_description, replace_table  # noqa: E402

TASK = "density-perovskite-small-v0"


def make_rollout(env, params, n_envs: int, n_steps: int, consume_obs: bool):
    V = env.num_actions
    v_reset = jax.vmap(env.reset, in_axes=(0, None))
    v_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def checksum(obs):
        return sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(obs))

    def run(key):
        key, k0 = jax.random.split(key)
        obs, state = v_reset(jax.random.split(k0, n_envs), params)

        def body(carry, _):
            state, key, acc = carry
            key, k_act, k_step = jax.random.split(key, 3)
            actions = jax.random.randint(k_act, (n_envs,), 0, V)
            obs, state, reward, term, trunc, info = v_step(
                jax.random.split(k_step, n_envs), state, actions, params)
            acc = acc + reward.sum()
            if consume_obs:
                acc = acc + 1e-9 * checksum(obs)
            return (state, key, acc), None

        (state, key, acc), _ = jax.lax.scan(body, (state, key, jnp.float32(0)), None, n_steps)
        return acc

    return jax.jit(run)


def time_jitted(env, params, n_envs, n_steps, consume_obs, repeats=3):
    fn = make_rollout(env, params, n_envs, n_steps, consume_obs)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    fn(key).block_until_ready()
    compile_s = time.perf_counter() - t0
    best = np.inf
    for r in range(repeats):
        t0 = time.perf_counter()
        fn(jax.random.PRNGKey(r + 1)).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return {"envs": n_envs, "steps_per_env": n_steps, "consume_obs": consume_obs,
            "compile_plus_first_run_s": round(compile_s, 3), "run_s": round(best, 4),
            "env_steps_per_s": n_envs * n_steps / best}


def time_gymnasium(n_steps):
    env = GymnasiumEnv(TASK)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(20):  # compile + warm up
        _, _, term, _, _ = env.step(int(rng.integers(env.env.num_actions)))
        if term:
            env.reset()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        _, _, term, _, _ = env.step(int(rng.integers(env.env.num_actions)))
        if term:
            env.reset()
    dt = time.perf_counter() - t0
    return {"steps": n_steps, "run_s": round(dt, 3), "env_steps_per_s": n_steps / dt}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, nargs="+", default=[1, 64, 1024, 4096])
    ap.add_argument("--steps", type=int, default=500, help="scan length per timed run")
    ap.add_argument("--gym-steps", type=int, default=2000)
    ap.add_argument("--out", default="benchmarks/env_throughput.json")
    ap.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--section", default="env-throughput",
                    help="BENCHMARKS.md section to write (e.g. env-throughput-gpu)")
    ap.add_argument("--from-json", metavar="JSON",
                    help="only render the BENCHMARKS.md section of an earlier results file "
                         "(e.g. one measured on another machine)")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            replace_table("BENCHMARKS.md", args.section, markdown(json.load(f), args.from_json))
        print(f"updated BENCHMARKS.md ({args.section}) from {args.from_json}")
        return

    env, params = crystaljax.make(TASK)
    rows = []
    for n in args.envs:
        for consume in (False, True):
            row = time_jitted(env, params, n, args.steps, consume)
            rows.append(row)
            print(f"jit+vmap+scan envs={n:5d} consume_obs={consume!s:5}: "
                  f"{row['env_steps_per_s']:,.0f} steps/s "
                  f"(compile+first {row['compile_plus_first_run_s']} s)", flush=True)
    gym = time_gymnasium(args.gym_steps)
    print(f"gymnasium python loop: {gym['env_steps_per_s']:,.0f} steps/s", flush=True)
    best_4096 = max((r["env_steps_per_s"] for r in rows if r["envs"] == max(args.envs)), default=0)
    result = {
        "task": TASK, "machine": machine_description(), "jax": jax.__version__,
        "backend": jax.default_backend(), "jitted": rows, "gymnasium_loop": gym,
        "speedup_largest_batch_vs_gymnasium": best_4096 / gym["env_steps_per_s"],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")

    if not args.no_markdown:
        replace_table("BENCHMARKS.md", args.section, markdown(result, args.out))
        print(f"updated BENCHMARKS.md ({args.section})")


def markdown(result: dict, source: str) -> str:
    """The BENCHMARKS.md table of one results JSON of this script."""
    rows, gym = result["jitted"], result["gymnasium_loop"]
    largest = max(r["envs"] for r in rows)
    steps = rows[0]["steps_per_env"]
    lines = [
        f"Task `{result['task']}`, random actions, in-graph density oracle, {steps} steps per "
        f"timed run (best of 3). Machine: {result['machine']}; JAX {result['jax']} "
        f"({result['backend']}). Source: `{source}` from `python scripts/bench_env.py`.",
        "",
        ("'obs consumed: no' lets XLA drop observation fields a random policy never reads; "
         "'yes' builds and reduces the whole observation (edge features included) every step."),
        "",
        "| driver | envs | obs consumed | env steps/s | compile + first run (s) |",
        "|---|---:|:---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| jit + vmap + scan | {r['envs']} | {'yes' if r['consume_obs'] else 'no'} "
                     f"| {r['env_steps_per_s']:,.0f} | {r['compile_plus_first_run_s']} |")
    lines.append(f"| Gymnasium adapter, Python loop | 1 | yes | {gym['env_steps_per_s']:,.0f} | – |")
    lines += ["", f"Speed-up of {largest} vmapped envs over the Python loop: "
              f"**{result['speedup_largest_batch_vs_gymnasium']:,.0f}x** "
              "(target: >= 1,000,000 steps/s at 4096 envs and >= 1,000x)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
