"""Training throughput (scripts/bench_train.py): how fast each agent trains, beside the
env's own speed at the same number of envs and the arithmetic of one gradient update.

Every (agent, envs) cell runs in a fresh Python process with its own empty compilation
cache, so compile times are cold and peak memory is that cell's. The first cell at each
agent's ``warm_envs`` is then run again in another fresh process on the now-filled cache:
its compile time is what a user sees on the second run of the same config.

Per cell (the package defaults = the benchmark settings, run lengths of
configs/benchmark_agents.yaml, density task):

* ``compile_s``: trace + lower + compile of ``train_chunk`` (the first call's overhead).
* ``env_steps_per_s`` and ``updates_per_s``: the best of ``repeats`` timed chunks after a
  warm-up chunk (replay agents: after ``learning_starts``, so every chunk updates).
* ``update_gflop``: XLA's cost analysis of ONE jitted gradient update (replay agents:
  ``agent.update``, batch ``batch_size``; PPO: one minibatch step), and
  ``update_gflops_per_s = update_gflop * updates_per_s``, the arithmetic rate the
  learner sustains in its updates (PPO's rollout arithmetic is not included there).
* ``env_only_steps_per_s``: :func:`crystaljax.benchmarks.env_throughput.time_jitted`
  (random actions, observations consumed) at the same number of envs.
* ``peak_rss_gib`` (CPU; the process's maximum resident set) or ``peak_device_gib``
  (accelerators; ``peak_bytes_in_use``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from crystaljax.benchmarks.machine import machine_description, render_results, write_results
from crystaljax.benchmarks.results import SETTINGS, load_settings, split_settings

TASK = "density-perovskite-small-v0"
AGENTS = ("dqn", "rainbow", "ppo", "sac")
#: the env counts the issue asks for on a CPU; add larger ones on a GPU
DEFAULT_ENVS = (8, 256, 1024)
#: the number of envs whose compile time is also measured on a warm cache
WARM_ENVS = 256
#: env steps per timed chunk of the replay agents (at least one iteration)
CHUNK_ENV_STEPS = 200


def cell_config(agent: str, num_envs: int, settings_path: str | None = SETTINGS) -> dict:
    """The agent overrides of one cell: the benchmark settings of ``agent`` with
    ``num_envs`` envs, everything else as set there (PPO: the same rollout length per env
    and minibatch count, so bigger rollouts with more envs; replay agents: the same replay
    ratio, train_frequency), learning from the first iteration on."""
    _, overrides = split_settings(load_settings(settings_path).get(agent, {"env_steps": 0}))
    overrides = dict(overrides, num_envs=num_envs)
    if agent != "ppo":
        overrides["learning_starts"] = 0
        overrides["buffer_size"] = max(int(overrides.get("buffer_size", 2000)), 4 * num_envs)
    return overrides


def _peak_memory_gib() -> dict:
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        return {"peak_device_gib": round(stats.get("peak_bytes_in_use", 0) / 2**30, 3)}
    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def _update_cost(agent, state) -> float:
    """GFLOP of one gradient update (XLA cost analysis of its own jitted function)."""
    import jax
    import jax.numpy as jnp

    if agent.name == "ppo":
        from crystaljax.agents.ppo import PPOSamples

        cfg = agent.config
        rows = cfg.minibatch_size
        reps = -(-rows // cfg.num_envs)
        obs = jax.tree.map(lambda x: jnp.concatenate([x] * reps)[:rows], state.obs)
        zeros = jnp.zeros((rows,), jnp.float32)
        batch = PPOSamples(obs=obs, action=jnp.zeros((rows,), jnp.int32), log_prob=zeros,
                           value=zeros, advantage=zeros + 1.0, target=zeros)
        fn, args = agent._minibatch_update, ((state.params, state.opt_state), (batch, None))
    else:
        fn, args = agent.update, (state, jax.random.PRNGKey(0), jnp.int32(0))
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan"))) / 1e9


def measure_cell(agent_name: str, num_envs: int, settings_path: str | None = SETTINGS,
                 repeats: int = 2, timing: bool = True, env_steps: int = 200) -> dict:
    """One cell, in this process (see the module docstring). ``timing=False`` measures the
    compile time only (the warm-cache run)."""
    import jax

    import crystaljax
    from crystaljax.agents import make_agent
    from crystaljax.benchmarks.env_throughput import time_jitted

    env, params = crystaljax.make(TASK)
    overrides = cell_config(agent_name, num_envs, settings_path)
    agent = make_agent(agent_name, env, params, overrides)
    cfg = agent.config
    state = agent.init(jax.random.PRNGKey(0))
    jax.block_until_ready(state)
    # one PPO iteration (a rollout and its epochs); replay agents: >= CHUNK_ENV_STEPS
    iterations = (1 if agent_name == "ppo"
                  else max(1, -(-CHUNK_ENV_STEPS // cfg.env_steps_per_iteration)))
    t0 = time.perf_counter()
    compiled = agent.train_chunk.lower(state, iterations).compile()
    row = {"agent": agent_name, "envs": num_envs, "iterations_per_chunk": iterations,
           "env_steps_per_chunk": iterations * cfg.env_steps_per_iteration,
           "compile_s": round(time.perf_counter() - t0, 2)}
    if not timing:
        return row
    # warm-up: one chunk, and more until updates happen in every chunk (replay agents
    # start learning after learning_starts env steps, e.g. Rainbow's n_step * num_envs)
    for _ in range(64):
        state, _ = compiled(state)
        jax.block_until_ready(state)
        if int(state.env_steps) >= getattr(agent, "learning_starts", 0) + cfg.num_envs:
            break
    best, updates = np.inf, 0
    for _ in range(repeats):
        before = int(state.updates)
        t0 = time.perf_counter()
        state, _ = compiled(state)
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - t0
        if elapsed < best:  # updates/s and env steps/s of the same (fastest) chunk
            best, updates = elapsed, int(state.updates) - before
    row.update(run_s=round(best, 4), env_steps_per_s=row["env_steps_per_chunk"] / best,
               updates_per_s=updates / best, updates_per_chunk=updates,
               batch_size=(cfg.minibatch_size if agent_name == "ppo" else cfg.batch_size))
    row["update_gflop"] = _update_cost(agent, state)
    row["update_gflops_per_s"] = row["update_gflop"] * row["updates_per_s"]
    env_row = time_jitted(env, params, num_envs, env_steps, consume_obs=True, repeats=2)
    row["env_only_steps_per_s"] = env_row["env_steps_per_s"]
    row.update(_peak_memory_gib())
    env.close()
    return row


def _run_cell_process(agent: str, envs: int, cache_dir: str, settings_path: str | None,
                      repeats: int, timing: bool, timeout_s: float) -> dict:
    """measure_cell in a fresh interpreter with ``cache_dir`` as its compilation cache."""
    code = ("import json, sys; from crystaljax.benchmarks.train_throughput import measure_cell; "
            f"print('RESULT ' + json.dumps(measure_cell({agent!r}, {envs}, {settings_path!r}, "
            f"{repeats}, {timing})))")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache_dir)
    env.pop("CRYSTALJAX_COMPILATION_CACHE", None)
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"agent": agent, "envs": envs, "error": f"timed out after {timeout_s:.0f} s"}
    except OSError as exc:  # the interpreter could not be started
        return {"agent": agent, "envs": envs, "error": f"cannot start {sys.executable}: {exc}"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"agent": agent, "envs": envs, "error": f"exit {out.returncode}: {tail[0]}"}
    return json.loads(lines[-1][len("RESULT "):])


def run(agents: Sequence[str] = AGENTS, envs: Sequence[int] = DEFAULT_ENVS,
        settings_path: str | None = SETTINGS, repeats: int = 2, warm_envs: int | None = WARM_ENVS,
        timeout_s: float = 1800.0) -> dict:
    """Every cell in its own process; returns the results document."""
    import jax

    rows = []
    for agent in agents:
        for n in envs:
            with tempfile.TemporaryDirectory(prefix="crystaljax-bench-xla-") as cache:
                row = _run_cell_process(agent, n, cache, settings_path, repeats, True,
                                        timeout_s)
                if n == warm_envs and "error" not in row:
                    warm = _run_cell_process(agent, n, cache, settings_path, 1, False, timeout_s)
                    row["compile_warm_cache_s"] = warm.get("compile_s", float("nan"))
            rows.append(row)
            print(_progress_line(row), flush=True)
    return {"task": TASK, "machine": machine_description(), "jax": jax.__version__,
            "backend": jax.default_backend(),
            "settings": os.path.relpath(settings_path) if settings_path else None,
            "rows": rows, "timestamp": time.strftime("%Y-%m-%d %H:%M:%S")}


def merge_rows(previous: dict, result: dict) -> dict:
    """``result`` with the rows of ``previous`` that it did not re-measure (same agent and
    envs), in the order agent, envs; ``result``'s header wins."""
    fresh = {(r["agent"], r["envs"]) for r in result["rows"]}
    rows = [r for r in previous.get("rows", []) if (r["agent"], r["envs"]) not in fresh]
    rows += result["rows"]
    order = {name: i for i, name in enumerate(AGENTS)}
    rows.sort(key=lambda r: (order.get(r["agent"], len(order)), r["envs"]))
    return dict(result, rows=rows)


def _progress_line(row: dict) -> str:
    if "error" in row:
        return f"{row['agent']:8s} envs={row['envs']:6d}: FAILED ({row['error']})"
    warm = (f", warm-cache compile {row['compile_warm_cache_s']:.1f} s"
            if "compile_warm_cache_s" in row else "")
    return (f"{row['agent']:8s} envs={row['envs']:6d}: {row['env_steps_per_s']:9,.0f} env steps/s, "
            f"{row['updates_per_s']:7,.1f} updates/s, compile {row['compile_s']:.1f} s{warm}")


def _fmt(x, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def markdown(result: dict, source: str) -> str:
    """The BENCHMARKS.md table of one results document."""
    memory_key = "peak_device_gib" if result["backend"] != "cpu" else "peak_rss_gib"
    lines = [
        f"Task `{result['task']}`, benchmark network and settings "
        f"(`{result['settings']}`), one process per row with a cold compilation cache. "
        f"Machine: {result['machine']}; JAX {result['jax']} ({result['backend']}). Source: "
        f"`{source}` from `python scripts/bench_train.py`.", "",
        "'compile' is trace + lower + compile of the first training chunk; 'warm' the same "
        "in a second process on the filled persistent cache. 'GFLOP/update' is XLA's cost "
        "analysis of one gradient update at the batch shown; 'GFLOP/s in updates' is that "
        "times the updates per second. 'env alone' is the env with random actions at the same "
        "number of envs.", "",
        "| agent | envs | env steps/s | updates/s | batch | compile (s) | warm (s) | "
        "GFLOP/update | GFLOP/s in updates | env alone (steps/s) | learner / env | "
        "peak mem (GiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['agent']} | {r['envs']} | failed: {r['error']} |" + " |" * 10)
            continue
        ratio = r["env_steps_per_s"] / r["env_only_steps_per_s"]
        lines.append(
            f"| {r['agent']} | {r['envs']} | {r['env_steps_per_s']:,.0f} | "
            f"{r['updates_per_s']:,.1f} | {r['batch_size']} | {r['compile_s']:.1f} | "
            f"{_fmt(r.get('compile_warm_cache_s'), '.1f')} | {r['update_gflop']:.3f} | "
            f"{r['update_gflops_per_s']:.1f} | {r['env_only_steps_per_s']:,.0f} | "
            f"{ratio:.2g} | {_fmt(r.get(memory_key), '.2f')} |")
    return "\n".join(lines)


def write(result: dict, out: str, markdown_path: str | None, section: str) -> None:
    """``out`` (JSON) and, unless ``markdown_path`` is None, its BENCHMARKS.md section."""
    write_results(result, out, markdown_path, section, markdown)


def render(source: str, markdown_path: str, section: str) -> None:
    """Rewrite ``section`` of ``markdown_path`` from the results JSON ``source``."""
    render_results(source, markdown_path, section, markdown)


__all__ = ["AGENTS", "DEFAULT_ENVS", "TASK", "WARM_ENVS", "cell_config", "markdown",
           "measure_cell", "merge_rows", "render", "run", "write"]
