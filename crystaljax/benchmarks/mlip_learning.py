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
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from crystaljax.benchmarks.machine import replace_section
from crystaljax.benchmarks.results import ROOT, Results
from crystaljax.training.sweep import SweepResult, run_sweep

TASK = "bulk-modulus-perovskite-small-v0"
CRITERION_RELATIVE = 0.05
DISTRIBUTION = os.path.join(ROOT, "benchmarks", "chgnet_distribution.json")
#: the learning runs' results file, and the DFT check of their best crystals (:func:`verify`)
RESULTS = os.path.join(ROOT, "benchmarks", "mlip_learning.json")
VERIFY = os.path.join(ROOT, "benchmarks", "mlip_learning_verify.json")


def verify_path(results_path: str) -> str:
    """Where :func:`verify` writes the DFT check of a results file (``X.json`` ->
    ``X_verify.json``)."""
    return os.path.splitext(results_path)[0] + "_verify.json"


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
        f"training iterations). Criterion: greedy median relative error <= {CRITERION_RELATIVE:.0%}. "
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


def write_outputs(results: Results, out: str, markdown_path: str | None,
                  verification: Mapping[str, dict] | None = None) -> None:
    """``out`` (JSON) and, unless ``markdown_path`` is None, its section there (with the
    DFT check of :func:`verify` when given)."""
    results.save(out)
    if markdown_path:
        source = os.path.relpath(os.path.splitext(out)[0],
                                 os.path.dirname(os.path.abspath(markdown_path)))
        text = markdown(results, source)
        if verification:
            text += ("\n\nThe best crystals recomputed with Quantum ESPRESSO (`--verify`, "
                     f"`{source}_verify.json`): B0 of a Birch-Murnaghan fit "
                     "at the DFT E(V) minimum (`recipe.relax: volume`) against CHGNet's B at "
                     "its own minimum.\n\n" + verification_markdown(verification))
        replace_section(markdown_path, "mlip-learning", text)


def refresh_results_table() -> None:
    """Rewrite benchmarks/results.md (its MLIP learning rows read the files of this module)."""
    from crystaljax.benchmarks import table

    source = os.path.join(ROOT, "benchmarks", "results")
    with open(os.path.join(ROOT, "benchmarks", "results.md"), "w") as f:
        f.write(table.markdown(Results.load(source + ".json")))


def load_verification(path: str = VERIFY) -> dict | None:
    """The content :func:`verify` wrote, or None when there is none."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def results_rows(results: Results, verification: Mapping[str, dict] | None) -> list[str]:
    """The MLIP learning rows of benchmarks/results.md: per agent (with its settings other
    than the package defaults), the criterion, the greedy errors, the best crystals and
    their DFT check."""
    first = results.runs[0]
    baseline = next((r.random for r in results.runs if r.random), None)
    random_error = (f"{baseline['median_abs_error'] / abs(first.target):.3f}" if baseline
                    else "-")
    lines = [
        "## Learning the relaxed bulk modulus from the in-graph CHGNet", "",
        f"`scripts/bench_mlip.py --learning` on {first.machine_label}: task `{first.task}`, "
        f"CHGNet 0.3.0 in the jitted step (relax volume), target {first.target:.1f} GPa (the "
        "95th percentile of random crystals); one run per seed. Criterion: greedy median "
        f"relative error <= {CRITERION_RELATIVE:.0%} within the run. \"QE - CHGNet\": mean "
        "absolute relative difference of the agent's best crystals recomputed with Quantum "
        "ESPRESSO (`fast`, relax volume; BENCHMARKS.md has each crystal).", "",
        "| agent | seeds | env steps | seeds meeting the criterion | best greedy relative "
        "error per seed | final greedy relative error | random policy | best B found (GPa) | "
        "crystals DFT-checked (ok) | QE - CHGNet | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for agent in sorted({r.agent for r in results.runs}):
        runs = [r for r in results.runs if r.agent == agent]
        best = [float(np.nanmin(relative_errors(r))) for r in runs]
        final = np.asarray([relative_errors(r)[-1] for r in runs])
        found = np.asarray([np.asarray(r.best_property, float).ravel()[0] for r in runs])
        met = sum(steps_to_criterion(r) is not None for r in runs)
        check = (verification or {}).get(agent)
        summary = check["summary"] if check else None
        checked = f"{summary['crystals']} ({summary['ok']})" if summary else "-"
        rel = summary.get("mean_abs_relative_difference") if summary else None
        settings = {k: v for r in runs for k, v in sorted(r.overrides.items())}
        label = agent + (f" ({', '.join(f'{k}={v}' for k, v in settings.items())})"
                         if settings else "")
        lines.append(
            f"| {label} | {len(runs)} | {runs[0].chunk_steps[-1]:,} | {met}/{len(runs)} | "
            f"{', '.join(f'{b:.3f}' for b in best)} | {final.mean():.3f} ± {final.std():.3f} | "
            f"{random_error} | {found.mean():.1f} ± {found.std():.1f} | {checked} | "
            f"{'-' if rel is None else f'{rel:.0%}'} | {sum(r.wall_s for r in runs):.0f} |")
    return lines


def top_crystals(results: Results, agent: str, top: int = 5,
                 same_crystal: Callable[[dict], str] | None = None) -> list[dict]:
    """The ``top`` best distinct crystals ``agent`` found over its seeds (by the reward of
    training: each seed's :attr:`SweepResult.top_crystals`), best first, with ``seed``.
    ``same_crystal(c)``: a name shared by equivalent crystals (e.g. symmetry-equivalent
    decorations), of which only the best is kept; default: the decoration itself."""
    merged: dict[tuple, dict] = {}
    for run in results.runs:
        for seed_top in (run.top_crystals or []) if run.agent == agent else []:
            for c in seed_top:
                key = (c["template_id"], tuple(c["tokens"]))
                if key not in merged or merged[key]["reward"] < c["reward"]:
                    merged[key] = {**c, "seed": run.seed}
    chosen, names = [], set()
    for c in sorted(merged.values(), key=lambda c: -c["reward"]):
        if len(chosen) >= top:
            break
        name = same_crystal(c) if same_crystal else (c["template_id"], tuple(c["tokens"]))
        if name not in names:
            names.add(name)
            chosen.append(c)
    return chosen


def verify(results: Results, top: int = 5, preset: str = "fast", relax: str = "volume",
           workers: int = 2, out: str = VERIFY) -> dict:
    """Recompute each agent's ``top`` best crystals with Quantum ESPRESSO (``preset``,
    ``recipe.relax`` = ``relax``: B0 at the DFT E(V) minimum against CHGNet's B at its
    own) and write ``out``: ``{agent: verify.json content}``
    (:func:`crystaljax.training.verify.verify_crystals`)."""
    import crystaljax
    from crystaljax.training.artifacts import EquivalentCrystals
    from crystaljax.training.verify import oracle_label, verify_crystals

    first = results.runs[0]
    env, _ = crystaljax.make(first.task, **first.env)

    built: dict[tuple, tuple] = {}  # (template id, tokens) -> (symbols, Structure)

    def structure_of(c):
        key = (c["template_id"], tuple(c["tokens"]))
        if key not in built:
            template = env.templates[c["template_id"]]
            symbols = [env.vocab[t] for t in c["tokens"][:template.num_sites]]
            built[key] = symbols, template.to_structure(symbols)
        return built[key]

    classes = EquivalentCrystals()  # symmetry-equivalent decorations are one crystal

    def class_name(c):
        symbols, structure = structure_of(c)
        return classes.name(f"{c['template_id']}:{'-'.join(symbols)}", structure)
    with env:
        run_label = oracle_label("chgnet", env.in_graph_oracle.options)
        out_data = {}
        for agent in sorted({r.agent for r in results.runs}):
            chosen = top_crystals(results, agent, top, class_name)
            records, structures = [], []
            for rank, c in enumerate(chosen, start=1):
                template = env.templates[c["template_id"]]
                symbols, structure = structure_of(c)
                records.append({"rank": rank, "formula": structure.composition.reduced_formula,
                                "template": template.name, "symbols": symbols,
                                "reward": c["reward"], "property": first.property,
                                first.property: c["property"], "unit": "GPa",
                                "seed": c["seed"], "found_by": c["found_by"]})
                structures.append(structure)
            if not records:
                continue
            print(f"{agent}: computing its {len(records)} best crystals with QE ({preset}, "
                  f"relax {relax}) ...", flush=True)
            out_data[agent] = verify_crystals(records, structures, first.property, run_label,
                                              "qe", preset, relax, {"workers": workers})
            for entry, rec in zip(out_data[agent]["crystals"], records):
                entry.update(seed=rec["seed"], found_by=rec["found_by"])
            with open(out, "w") as f:
                json.dump(out_data, f, indent=2)
    return out_data


def verification_markdown(verification: Mapping[str, dict]) -> str:
    """One table of every verified crystal: CHGNet B, QE B, difference, status."""
    lines = ["| agent | rank | crystal | seed | CHGNet B (GPa) | QE B (GPa) | QE - CHGNet | "
             "QE status |", "|---|---|---|---|---|---|---|---|"]
    for agent, result in verification.items():
        for c in result["crystals"]:
            qe = "-" if c["value"] is None else f"{c['value']:.1f}"
            diff = ("-" if c["difference"] is None else
                    f"{c['difference']:+.1f} ({c['relative_difference']:+.0%})")
            lines.append(f"| {agent} | {c['rank']} | {c['formula']} ({'-'.join(c['symbols'])}) "
                         f"| {c.get('seed', '-')} | {c['run_value']:.1f} | {qe} | {diff} | "
                         f"{c['status']} |")
    return "\n".join(lines)


__all__ = ["CRITERION_RELATIVE", "RESULTS", "TASK", "VERIFY", "load_verification", "markdown",
           "refresh_results_table", "relative_errors", "results_rows", "run",
           "steps_to_criterion", "target_from_distribution", "top_crystals",
           "verification_markdown", "verify", "verify_path", "write_outputs"]
