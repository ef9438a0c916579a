"""The in-graph CHGNet oracle measured: property distribution of random crystals, throughput.

* :func:`distribution`: the property of ``num`` uniformly random decorations of a task's
  cell, computed by the in-graph oracle inside the jitted env step (the random policy's
  final crystals); percentiles and the NO_MINIMUM fraction. The learning benchmark sets its
  target at the 95th percentile.
* :func:`side_by_side`: finished crystals per second of the env step with the oracle at a
  list of env counts (compile time apart), beside the host torch oracle on the same crystals.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from crystaljax.benchmarks.machine import machine_description
from crystaljax.oracles.base import Status


class Episodes(NamedTuple):
    """Finished crystals of :func:`_random_episodes`, in order (all rounds)."""

    values: list[float]
    statuses: list[int]
    structures: list[Any]  # pymatgen Structures
    compile_seconds: float  # compiling the reset and the step, and their first run
    seconds: float  # all rounds


def env_step(env, devices: int = 1):
    """The jitted env step vmapped over envs; with ``devices`` > 1 the envs are split over
    that many XLA devices (``shard_map``: each device steps, and scores, its own envs; on a
    CPU these are host devices, one per core, from ``XLA_FLAGS``)."""
    step = jax.vmap(env.step_env, (0, 0, None))
    if devices == 1:
        return jax.jit(step)
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    available = jax.devices()
    if len(available) < devices:
        raise ValueError(
            f"{devices} devices asked for, JAX has {len(available)}; on a CPU set XLA_FLAGS="
            f"--xla_force_host_platform_device_count={devices} before JAX starts "
            "(scripts/bench_mlip.py --host-devices does)")
    mesh = Mesh(np.asarray(available[:devices]), ("envs",))
    return jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P("envs"), P("envs"), P()),
                                 out_specs=P("envs"), check_vma=False))


def _random_episodes(env, params, num_envs: int, episodes: int, seed: int,
                     devices: int = 1, keep_structures: int | None = None,
                     warmup_round: bool = False) -> Episodes:
    """Run ``episodes`` rounds of random-policy episodes over ``num_envs`` envs through the
    jitted, vmapped env step (the in-graph oracle scores the finished crystals), the envs
    split over ``devices`` XLA devices (:func:`env_step`). The reset and the step are
    compiled ahead of time and run once with one crystal in every env: ``compile_seconds``.
    Every round is then timed (``seconds``), none is spent on compiling (a 65,536-env round
    takes minutes on a GPU). The first round of random crystals still pays some one-time
    set-up (about 0.5 s on a CPU, more than the round itself at a few envs):
    ``warmup_round`` runs one such round first, untimed and not recorded.
    ``keep_structures``: build the pymatgen Structure of only the first this many finished
    crystals of each round (None: all; building 65,536 of them takes longer than computing
    them on a GPU)."""
    if num_envs % devices:
        raise ValueError(f"{num_envs} envs do not split over {devices} devices")
    steps = max(t.num_sites for t in env.templates)
    key = jax.random.PRNGKey(seed)
    start = time.perf_counter()
    reset_keys = jax.random.split(key, num_envs)
    v_reset = jax.jit(jax.vmap(env.reset, (0, None))).lower(reset_keys, params).compile()
    _, state = v_reset(reset_keys, params)
    no_actions = jax.numpy.zeros((num_envs,), jax.numpy.int32)
    v_step = env_step(env, devices).lower(state, no_actions, params).compile()
    for _ in range(steps):  # a first run of every branch (the oracle's too), untimed
        _, state, _, done, _, info = v_step(state, no_actions, params)
    jax.block_until_ready(info["property"])
    compile_s = time.perf_counter() - start
    out = Episodes([], [], [], compile_s, 0.0)
    run_s = 0.0
    for episode in range(-int(warmup_round), episodes):
        key, k_reset, k_act = jax.random.split(key, 3)
        reset_keys = jax.random.split(k_reset, num_envs)  # (outside the clock: eager ops
        actions = np.asarray(jax.random.randint(  # compile the first time they run)
            k_act, (steps, num_envs), 0, env.num_actions, jax.numpy.int32))
        start = time.perf_counter()
        _, state = v_reset(reset_keys, params)
        for k in range(steps):
            _, state, _, done, _, info = v_step(state, actions[k], params)
        jax.block_until_ready(info["property"])
        if episode < 0:
            continue
        run_s += time.perf_counter() - start
        finished = np.asarray(done)
        out.values.extend(np.asarray(info["property"])[finished].tolist())
        out.statuses.extend(np.asarray(info["status"])[finished].tolist())
        out.structures.extend(env.to_structure(state, int(i))
                              for i in np.flatnonzero(finished)[:keep_structures])
    return out._replace(seconds=run_s)


def distribution(task: str, num: int, seed: int = 0, num_envs: int = 64,
                 overrides: dict | None = None) -> dict[str, Any]:
    """Property of ``num`` random crystals of ``task`` with the in-graph CHGNet oracle."""
    import crystaljax

    overrides = {"oracle": "chgnet", **(overrides or {})}
    env, params = crystaljax.make(task, **overrides)
    rounds = -(-num // num_envs)
    episodes = _random_episodes(env, params, num_envs, rounds, seed)
    compile_s, run_s = episodes.compile_seconds, episodes.seconds
    timed = len(episodes.values)
    values, statuses = episodes.values[:num], episodes.statuses[:num]
    formulas = [c.composition.reduced_formula for c in episodes.structures[:num]]
    ok = np.asarray(statuses) == Status.OK
    good = np.asarray(values)[ok]
    order = np.argsort(good)[::-1]
    return {
        "task": task, "overrides": overrides, "num": len(values), "seed": seed,
        "property": env.property_name, "unit": env.property.unit,
        "oracle_options": dict(vars(env.in_graph_oracle.options)),
        "ok": int(ok.sum()), "no_minimum": int((np.asarray(statuses) == Status.NO_MINIMUM).sum()),
        "percentiles": {str(q): float(np.percentile(good, q)) for q in (5, 25, 50, 75, 90, 95, 99)}
        if good.size else {},
        "max": float(good.max()) if good.size else None,
        "top": [[np.asarray(formulas)[ok][i], float(good[i])] for i in order[:10]],
        "values": [None if not np.isfinite(v) else float(v) for v in values],
        "statuses": [int(s) for s in statuses],
        "compile_seconds": compile_s, "seconds": run_s,
        "crystals_per_second": timed / run_s if run_s else None,
        "machine": machine_description(),
    }


#: side_by_side runs an untimed round of random crystals before the timed one up to this many
#: envs (beyond, a round takes minutes on a GPU and one-time set-up is below 1 % of it)
WARMUP_ROUND_MAX_ENVS = 4096


def side_by_side(task: str, env_counts: list[int], host_workers: int = 2,
                 overrides: dict | None = None, devices: int = 1, host_max: int | None = None,
                 progress: Callable[[dict], None] | None = None,
                 baseline: dict | None = None) -> dict[str, Any]:
    """Crystals per second of the in-graph oracle (jitted env step, ``n`` envs, one timed round
    of random episodes; compiled ahead of time and timed apart; up to
    :data:`WARMUP_ROUND_MAX_ENVS` envs after an untimed round) beside the host torch oracle
    (``chgnet-host``, a pool of ``host_workers`` processes; 0: no host oracle) on the same
    crystals, in one run.

    ``host_max``: the host computes only the first ``host_max`` crystals of a row (its
    crystals/s, the ratio and the differences are read on those; None: all). With
    ``devices`` > 1 also the in-graph oracle with the envs split over that many devices (the
    same crystals: the same keys). ``progress(result so far)`` is called after each row.
    ``baseline``: env overrides (on top of ``overrides``) of a second in-graph oracle timed
    on the same crystals in each row, one device (e.g. ``{"oracle_options": {"symmetry":
    False}}``): its crystals/s, our speed-up over it and how many statuses agree.
    """
    import crystaljax
    from crystaljax.oracles.chgnet_host import CHGNetHostOracle

    overrides = {"oracle": "chgnet", **(overrides or {})}
    env, params = crystaljax.make(task, **overrides)
    if baseline:
        merged = {k: ({**overrides[k], **v} if isinstance(v, dict)
                      and isinstance(overrides.get(k), dict) else v) for k, v in baseline.items()}
        baseline_env, baseline_params = crystaljax.make(task, **{**overrides, **merged})
    options = dict(vars(env.in_graph_oracle.options))
    host_options = {k: options[k] for k in ("relax", "min_scale", "max_scale", "steps")}
    result = {"task": task, "overrides": overrides, "oracle_options": options,
              "batching": env.in_graph_oracle.batching, "host_workers": host_workers,
              "host_max": host_max, "baseline": baseline, "rows": [],
              "machine": machine_description(),
              "jax": f"{jax.__version__} ({jax.default_backend()})"}
    host = (CHGNetHostOracle.from_options(env.property_name,
                                          {**host_options, "workers": host_workers})
            if host_workers else contextlib.nullcontext())
    with host:
        if host_workers:  # every worker loads its model before the clock runs
            template, rng = env.templates[0], np.random.default_rng(seed=12345)
            host.evaluate([template.to_structure(list(rng.choice(env.vocab, template.num_sites)))
                           for _ in range(2 * host_workers)])
        for n in env_counts:
            m = n if host_max is None else min(n, host_max)
            warmup = n <= WARMUP_ROUND_MAX_ENVS
            ours = _random_episodes(env, params, n, 1, 0, keep_structures=m,
                                    warmup_round=warmup)
            row = {"envs": n, "in_graph_compile_seconds": ours.compile_seconds,
                   "warmup_round": warmup,
                   "in_graph_seconds": ours.seconds, "in_graph_per_second": n / ours.seconds,
                   "in_graph_ok": int(np.sum(np.asarray(ours.statuses) == Status.OK))}
            if host_workers:
                row.update(_host_row(host, ours, n, m))
            if baseline:
                base = _random_episodes(baseline_env, baseline_params, n, 1, 0,
                                        keep_structures=m, warmup_round=warmup)
                mine, theirs = np.asarray(ours.values), np.asarray(base.values)
                both = np.isfinite(mine) & np.isfinite(theirs)
                row.update({"baseline_seconds": base.seconds,
                            "baseline_per_second": n / base.seconds,
                            "baseline_compile_seconds": base.compile_seconds,
                            "speedup_over_baseline": base.seconds / ours.seconds,
                            "baseline_same_crystals": base.structures == ours.structures,
                            "baseline_same_status": int(sum(
                                int(a) == int(b) for a, b in zip(ours.statuses, base.statuses))),
                            "baseline_max_relative_difference": float(np.max(
                                np.abs(mine[both] - theirs[both]) / np.abs(theirs[both])))
                            if both.any() else None})
            if devices > 1 and n % devices == 0:
                split = _random_episodes(env, params, n, 1, 0, devices, keep_structures=m,
                                         warmup_round=warmup)
                row.update({"devices": devices, "sharded_seconds": split.seconds,
                            "sharded_per_second": n / split.seconds,
                            "sharded_same_crystals": split.structures == ours.structures})
                if host_workers:
                    row["sharded_ratio"] = row["sharded_per_second"] / row["host_per_second"]
            result["rows"].append(row)
            print(row, flush=True)
            if progress is not None:
                progress(result)
    return result


def _host_row(host, ours: Episodes, n: int, m: int) -> dict[str, Any]:
    """The host oracle on the first ``m`` crystals of the timed round of ``ours`` (``n``
    envs): its crystals/s, the ratio, and how far the two oracles agree on those."""
    structures = ours.structures  # the round kept its first m structures
    start = time.perf_counter()
    results = host.evaluate(structures)
    host_s = time.perf_counter() - start
    mine = np.asarray(ours.values[:m])
    theirs = np.asarray([r.value for r in results])
    both = np.isfinite(mine) & np.isfinite(theirs)
    return {"host_crystals": m, "host_seconds": host_s, "host_per_second": m / host_s,
            "ratio": (n / ours.seconds) / (m / host_s),
            "max_relative_difference": float(np.max(np.abs(mine[both] - theirs[both])
                                                    / np.abs(theirs[both])))
            if both.any() else None,
            "same_status": int(sum(int(a) == int(r.status)
                                   for a, r in zip(ours.statuses[:m], results)))}


def throughput_markdown(result: dict, source: str) -> str:
    """BENCHMARKS.md section of a :func:`side_by_side` result."""
    title = ("### The same on a GPU" if "GPU:" in result["machine"] else
             "## In-graph CHGNet against the host torch CHGNet")
    host = (f"host: `chgnet-host` with {result['host_workers']} worker processes on the same "
            "machine and the same crystals, in the same run" if result["host_workers"]
            else "no host oracle in this run")
    batching = f", `{result['batching']}` batching" if "batching" in result else ""
    jax_version = f"; JAX {result['jax']}" if "jax" in result else ""
    lines = [
        f"{title} (`scripts/bench_mlip.py --throughput`)",
        "", f"{result['machine']}{jax_version}. Task `{result['task']}`, oracle options "
        f"{result['oracle_options']}{batching}; {host}. Raw numbers: `{source}`.", "",
        "| envs | in-graph crystals/s | host crystals/s | in-graph / host | in-graph compile (s) "
        "| max relative difference | same status | in-graph on D devices: crystals/s, / host |",
        "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        host = r.get("host_crystals", r["envs"]) if "host_per_second" in r else 0
        diff = ("-" if not host or r["max_relative_difference"] is None
                else f"{r['max_relative_difference']:.1e}")
        split = "-"
        if "devices" in r:
            ratio = f", {r['sharded_ratio']:.2f}x" if "sharded_ratio" in r else ""
            split = f"D = {r['devices']}: {r['sharded_per_second']:.2f}{ratio}"
        lines.append(
            f"| {r['envs']} | {r['in_graph_per_second']:.2f} "
            + (f"| {r['host_per_second']:.2f} | {r['ratio']:.2f}x " if host else "| - | - ")
            + f"| {r['in_graph_compile_seconds']:.0f} | {diff} "
            + (f"| {r['same_status']}/{host} " if host else "| - ") + f"| {split} |")
    if result.get("host_max") and result["host_workers"]:
        lines += ["", f"The host oracle computed the first {result['host_max']} crystals of "
                  "each larger row (its crystals/s, the ratio, the difference and the status "
                  "count are read on those)."]
    if result.get("baseline"):
        lines += ["", f"The same rounds with the in-graph oracle under `{result['baseline']}` "
                  "(the baseline, one device, same crystals, same run):", "",
                  "| envs | in-graph crystals/s | baseline crystals/s | speed-up | same status "
                  "| max relative difference |", "|---|---|---|---|---|---|"]
        for r in result["rows"]:
            if "baseline_per_second" not in r:
                continue
            diff = r.get("baseline_max_relative_difference")
            lines.append(f"| {r['envs']} | {r['in_graph_per_second']:.2f} | "
                         f"{r['baseline_per_second']:.2f} | {r['speedup_over_baseline']:.2f}x | "
                         f"{r['baseline_same_status']}/{r['envs']} | "
                         + ("-" if diff is None else f"{diff:.1e}") + " |")
    if result.get("chunk_sweep"):
        lines += ["", "The `chunk` option on this machine (in-graph oracle alone, "
                  "`--set oracle_options.chunk=C`; one timed round after an untimed one):", "",
                  "| chunk | envs | in-graph crystals/s | compile (s) | OK crystals |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c['chunk']} | {c['envs']} | {c['in_graph_per_second']:.1f} "
                  f"| {c['in_graph_compile_seconds']:.0f} | {c['in_graph_ok']} |"
                  for c in result["chunk_sweep"]]
    if result.get("notes"):
        lines += ["", result["notes"]]
    return "\n".join(lines)


def markdown(result: dict, source: str) -> str:
    """BENCHMARKS.md section of a :func:`distribution` result."""
    p = result["percentiles"]
    lines = [
        f"## Relaxed {result['property']} of random crystals, in-graph CHGNet "
        f"(`scripts/bench_mlip.py`)", "",
        f"{result['machine']}. Task `{result['task']}`, {result['num']} uniformly random "
        f"decorations (seed {result['seed']}), oracle options {result['oracle_options']}. "
        f"Raw numbers: `{source}`.", "",
        f"| computed | no minimum in range | 5 % | 25 % | median | 75 % | 90 % | 95 % | 99 % "
        f"| max ({result['unit']}) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {result['ok']} | {result['no_minimum']} | " + " | ".join(
            f"{p[q]:.1f}" for q in ("5", "25", "50", "75", "90", "95", "99"))
        + f" | {result['max']:.1f} |", "",
        "Highest: " + ", ".join(f"{f} {v:.1f}" for f, v in result["top"][:5]) + ".", "",
        f"Throughput of this run: {result['crystals_per_second']:.2f} crystals/s "
        f"({result['seconds']:.0f} s; compiled ahead of time in "
        f"{result['compile_seconds']:.0f} s).",
    ]
    return "\n".join(lines)


__all__ = ["Episodes", "distribution", "env_step", "markdown", "side_by_side",
           "throughput_markdown"]
