"""Env throughput (scripts/bench_env.py): jit + vmap + lax.scan against the Gymnasium adapter
in a Python loop, random actions, in-graph density oracle.

Two jitted variants are timed: "env only" (XLA may drop observation fields the random policy
does not read) and "obs consumed" (every observation field is reduced into the carry, so the
full observation is built each step).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import crystaljax
from crystaljax.benchmarks.machine import machine_description, render_results, write_results

TASK = "density-perovskite-small-v0"


def make_rollout(env, params, n_envs: int, n_steps: int, consume_obs: bool):
    """A jitted ``run(key)``: ``n_steps`` random steps of ``n_envs`` vmapped envs."""
    v_reset = jax.vmap(env.reset, in_axes=(0, None))
    v_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def checksum(obs):
        return sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(obs))

    def run(key):
        key, k0 = jax.random.split(key)
        _, state = v_reset(jax.random.split(k0, n_envs), params)

        def body(carry, _):
            state, key, acc = carry
            key, k_act, k_step = jax.random.split(key, 3)
            actions = jax.random.randint(k_act, (n_envs,), 0, env.num_actions)
            obs, state, reward, *_ = v_step(jax.random.split(k_step, n_envs), state, actions,
                                            params)
            acc = acc + reward.sum() + (1e-9 * checksum(obs) if consume_obs else 0.0)
            return (state, key, acc), None

        (_, _, acc), _ = jax.lax.scan(body, (state, key, jnp.float32(0)), None, n_steps)
        return acc

    return jax.jit(run)


def time_jitted(env, params, n_envs: int, n_steps: int, consume_obs: bool, repeats: int = 3
                ) -> dict:
    """Compile + first run, then the best of ``repeats`` timed runs."""
    fn = make_rollout(env, params, n_envs, n_steps, consume_obs)
    t0 = time.perf_counter()
    fn(jax.random.PRNGKey(0)).block_until_ready()
    compile_s = time.perf_counter() - t0
    best = np.inf
    for r in range(repeats):
        t0 = time.perf_counter()
        fn(jax.random.PRNGKey(r + 1)).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return {"envs": n_envs, "steps_per_env": n_steps, "consume_obs": consume_obs,
            "compile_plus_first_run_s": round(compile_s, 3), "run_s": round(best, 4),
            "env_steps_per_s": n_envs * n_steps / best}


def time_gymnasium(n_steps: int) -> dict:
    """Random steps of the Gymnasium adapter in a Python loop (after 20 warm-up steps)."""
    from crystaljax.wrappers import GymnasiumEnv

    env = GymnasiumEnv(TASK)
    rng = np.random.default_rng(0)
    env.reset(seed=0)

    def steps(n):
        for _ in range(n):
            _, _, term, _, _ = env.step(int(rng.integers(env.env.num_actions)))
            if term:
                env.reset()

    steps(20)
    t0 = time.perf_counter()
    steps(n_steps)
    dt = time.perf_counter() - t0
    env.close()
    return {"steps": n_steps, "run_s": round(dt, 3), "env_steps_per_s": n_steps / dt}


def run(envs: Sequence[int] = (1, 64, 1024, 4096), steps: int = 500, gym_steps: int = 2000
        ) -> dict:
    """Every batch size with and without consuming the observation, and the Python loop."""
    env, params = crystaljax.make(TASK)
    rows = []
    with env:
        for n in envs:
            for consume in (False, True):
                rows.append(time_jitted(env, params, n, steps, consume))
                print(f"jit+vmap+scan envs={n:5d} consume_obs={consume!s:5}: "
                      f"{rows[-1]['env_steps_per_s']:,.0f} steps/s (compile+first "
                      f"{rows[-1]['compile_plus_first_run_s']} s)", flush=True)
    gym = time_gymnasium(gym_steps)
    print(f"gymnasium python loop: {gym['env_steps_per_s']:,.0f} steps/s", flush=True)
    largest = max((r["env_steps_per_s"] for r in rows if r["envs"] == max(envs)), default=0)
    return {"task": TASK, "machine": machine_description(), "jax": jax.__version__,
            "backend": jax.default_backend(), "jitted": rows, "gymnasium_loop": gym,
            "speedup_largest_batch_vs_gymnasium": largest / gym["env_steps_per_s"],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S")}


def markdown(result: dict, source: str) -> str:
    """The BENCHMARKS.md table of one results JSON."""
    rows, gym = result["jitted"], result["gymnasium_loop"]
    lines = [
        f"Task `{result['task']}`, random actions, in-graph density oracle, "
        f"{rows[0]['steps_per_env']} steps per timed run (best of 3). Machine: "
        f"{result['machine']}; JAX {result['jax']} ({result['backend']}). Source: `{source}` "
        "from `python scripts/bench_env.py`.", "",
        "'obs consumed: no' lets XLA drop observation fields a random policy never reads; "
        "'yes' builds and reduces the whole observation (edge features included) every step.",
        "",
        "| driver | envs | obs consumed | env steps/s | compile + first run (s) |",
        "|---|---:|:---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| jit + vmap + scan | {r['envs']} | {'yes' if r['consume_obs'] else 'no'} "
                     f"| {r['env_steps_per_s']:,.0f} | {r['compile_plus_first_run_s']} |")
    lines.append(f"| Gymnasium adapter, Python loop | 1 | yes | {gym['env_steps_per_s']:,.0f} | – |")
    lines += ["", f"Speed-up of {max(r['envs'] for r in rows)} vmapped envs over the Python loop: "
              f"**{result['speedup_largest_batch_vs_gymnasium']:,.0f}x** "
              "(target: >= 1,000,000 steps/s at 4096 envs and >= 1,000x)."]
    return "\n".join(lines)


def write(result: dict, out: str, markdown_path: str | None, section: str) -> None:
    """``out`` (JSON) and, unless ``markdown_path`` is None, its BENCHMARKS.md section."""
    write_results(result, out, markdown_path, section, markdown)


def render(source: str, markdown_path: str, section: str) -> None:
    """Rewrite ``section`` of ``markdown_path`` from the results JSON ``source``."""
    render_results(source, markdown_path, section, markdown)


__all__ = ["TASK", "make_rollout", "markdown", "render", "run", "time_gymnasium", "time_jitted",
           "write"]
