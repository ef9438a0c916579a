"""Learning the band gap from Quantum ESPRESSO (issue 13 item 9): the rows of
benchmarks/results.md and the figure benchmarks/dft_learning.png, read from the run
directories under ``benchmarks/dft_learning/`` (``crystaljax train --resume`` continues them).

A run is resumed in parts; each part's process starts its oracle counters (DFT calls, cache
hits) and wall clock at zero, so the totals are sums over parts (a part ends where
``wall_s`` drops in metrics.csv). The random policy is the charge-balance-masked sample of
``scripts/bench_mask.py`` (``benchmarks/mask_metals.json``): random crystals of the same
cell and vocabulary, band gaps by the same QE preset.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from crystaljax.benchmarks.results import ROOT
from crystaljax.training.artifacts import read_metrics

RUNS = os.path.join(ROOT, "benchmarks", "dft_learning")
RANDOM_SAMPLE = os.path.join(ROOT, "benchmarks", "mask_metals.json")
FIGURE = os.path.join(ROOT, "benchmarks", "dft_learning.png")


@dataclasses.dataclass
class DFTRun:
    """One run directory, summed over its resumed parts.

    Attributes:
      name, agent, seed, task, target (eV), beta (reward width), preset: from its
        config.yaml.
      env_steps, crystals: per chunk, cumulative (crystals = finished training episodes).
      mean_reward: per chunk, the training episodes' mean terminal reward.
      best_gap: per chunk, the best property found so far (eV).
      eval_steps, eval_abs_error, eval_reward: the greedy evaluations.
      dft_calls, cache_hits, wall_s: summed over parts (evaluations included).
      parts: how many processes ran it.
      top: the best crystals (crystals/top_crystals.json), best first.
      total_env_steps: the configured length.
    """

    name: str
    agent: str
    seed: int
    task: str
    target: float
    beta: float
    preset: str
    env_steps: np.ndarray
    crystals: np.ndarray
    mean_reward: np.ndarray
    best_gap: np.ndarray
    eval_steps: np.ndarray
    eval_abs_error: np.ndarray
    eval_reward: np.ndarray
    dft_calls: int
    cache_hits: int
    wall_s: float
    parts: int
    top: list[dict]
    total_env_steps: int

    @property
    def finished(self) -> bool:
        return int(self.env_steps[-1]) >= self.total_env_steps if len(self.env_steps) else False


def _part_ends(wall_s: np.ndarray) -> np.ndarray:
    """Indices of the last row of each part (``wall_s`` restarts at a resume)."""
    drops = np.nonzero(np.diff(wall_s) < 0)[0]
    return np.append(drops, len(wall_s) - 1)


def load_run(run_dir: str) -> DFTRun:
    """A :class:`DFTRun` from ``run_dir`` (config.yaml, metrics.csv, crystals/)."""
    import yaml

    with open(os.path.join(run_dir, "config.yaml")) as f:
        config = yaml.safe_load(f)
    m = read_metrics(run_dir)
    if not m:
        raise ValueError(f"{run_dir}: metrics.csv has no rows yet")
    ends = _part_ends(m["wall_s"])
    evals = np.isfinite(m["eval_median_abs_error"])
    top_path = os.path.join(run_dir, "crystals", "top_crystals.json")
    top = json.load(open(top_path)) if os.path.exists(top_path) else []
    env = config["env"]
    return DFTRun(
        name=os.path.basename(os.path.normpath(run_dir)), agent=config["agent"]["name"],
        seed=int(config["train"]["seed"]), task=env["task"], target=float(env["target"]),
        beta=float(env.get("beta", 1.0)),
        preset=env.get("oracle_options", {}).get("preset", "default"),
        env_steps=m["env_steps"].astype(int), crystals=np.cumsum(m["episodes"]).astype(int),
        mean_reward=m["mean_terminal_reward"], best_gap=m["best_property"],
        eval_steps=m["env_steps"][evals].astype(int), eval_abs_error=m["eval_median_abs_error"][evals],
        eval_reward=m["eval_mean_reward"][evals],
        dft_calls=int(m["dft_calls"][ends].sum()), cache_hits=int(m["cache_hits"][ends].sum()),
        wall_s=float(m["wall_s"][ends].sum()), parts=len(ends), top=top,
        total_env_steps=int(config["agent"]["total_env_steps"]))


def load_runs(runs_dir: str = RUNS) -> list[DFTRun]:
    """Every run directory under ``runs_dir`` that has metrics, by name."""
    if not os.path.isdir(runs_dir):
        return []
    runs = []
    for name in sorted(os.listdir(runs_dir)):
        path = os.path.join(runs_dir, name)
        if os.path.isfile(os.path.join(path, "metrics.csv")):
            runs.append(load_run(path))
    return runs


def random_baseline(target: float, beta: float = 1.0, path: str = RANDOM_SAMPLE) -> dict | None:
    """The masked random sample's size, metal fraction, median |gap - target|, mean reward
    (the band gap's reward, ``exp(-(target - gap)^2 / beta)``) with its standard error
    (``reward_sem``) and best gap; None without the file."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        sample = json.load(f)["settings"]["charge_balance"]
    gaps = np.asarray([g for g in sample["gaps"] if g is not None], float)
    from crystaljax.properties import get_property
    from crystaljax.rewards import RewardParams

    params = RewardParams(target=np.float32(target), beta=np.float32(beta),
                          floor=np.float32(-5.0), penalty=np.float32(-1.0))
    rewards = get_property("band_gap").reward(gaps, np.zeros(len(gaps), np.int32), params, np)
    return {"crystals": int(len(gaps)), "metal_fraction": float(np.mean(gaps <= 0.0)),
            "median_abs_error": float(np.median(np.abs(gaps - target))),
            "mean_reward": float(np.mean(rewards)),
            "reward_sem": float(np.std(rewards, ddof=1) / np.sqrt(len(rewards)))
            if len(rewards) > 1 else 0.0,
            "best_gap": float(gaps.max()),
            "failed": int(sample.get("failed", 0))}


def _best(run: DFTRun) -> str:
    if not run.top:
        return "-"
    c = run.top[0]
    return f"{c['band_gap']:.2f} eV ({c['formula']})"


def results_rows(runs: list[DFTRun], baseline: dict | None) -> list[str]:
    """The section of benchmarks/results.md: one row per run, the random policy beside it."""
    if not runs:
        return []
    first = runs[0]
    lines = [
        "## Learning the band gap from Quantum ESPRESSO (DFT in the loop)", "",
        f"`configs/band_gap_dft_*.yaml`: task `{first.task}` with the charge-balance mask, "
        f"target {first.target:g} eV, QE preset `{first.preset}` (real pw.x for every new "
        "crystal; the cache answers repeats), 16 envs; runs resumed in parts "
        "(`crystaljax train --resume`), kept in `benchmarks/dft_learning/`; figure "
        "`benchmarks/dft_learning.png` (`scripts/dft_learning_table.py`). \"Greedy\": the "
        "greedy policy's crystal at the last evaluation (the cell and the policy are "
        "deterministic). Random policy: the charge-balanced random sample of "
        "`scripts/bench_mask.py` (same cell, vocabulary and preset).", "",
        "| agent | seed | env steps | training crystals | DFT calls | cache hits | mean "
        "reward, first / last 10 % of crystals | greedy \\|gap - target\\| (eV) | random "
        "policy: mean reward, median \\|error\\| | best crystal found | wall (h) | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rnd = (f"{baseline['mean_reward']:.3f}, {baseline['median_abs_error']:.2f} eV "
           f"({baseline['crystals']} crystals)" if baseline else "-")
    for run in runs:
        n = len(run.mean_reward)
        k = max(1, n // 10)
        early, late = np.nanmean(run.mean_reward[:k]), np.nanmean(run.mean_reward[-k:])
        greedy = f"{run.eval_abs_error[-1]:.2f}" if len(run.eval_abs_error) else "-"
        wanted = round(run.total_env_steps * run.crystals[-1] / run.env_steps[-1])
        status = ("finished" if run.finished else
                  f"in progress ({run.crystals[-1]:,} of {wanted:,} crystals)")
        lines.append(
            f"| {run.agent} | {run.seed} | {run.env_steps[-1]:,} | {run.crystals[-1]:,} | "
            f"{run.dft_calls:,} | {run.cache_hits:,} | {early:.3f} / {late:.3f} | {greedy} | "
            f"{rnd} | {_best(run)} | {run.wall_s / 3600:.1f} | {status} |")
    return lines + ["", "What they show:", ""] + [f"* {f}" for f in findings(runs, baseline)]


def findings(runs: list[DFTRun], baseline: dict | None) -> list[str]:
    """What the rows show, one plain sentence per run."""
    out = []
    for run in runs:
        n = len(run.mean_reward)
        late = float(np.nanmean(run.mean_reward[-max(1, n // 10):]))
        text = (f"{run.agent} seed {run.seed}: {run.crystals[-1]:,} training crystals "
                f"evaluated by DFT ({run.dft_calls:,} pw.x computations and {run.cache_hits:,} "
                f"cache hits, evaluations included, {run.wall_s / 3600:.1f} h)")
        if len(run.eval_abs_error):
            text += (f"; the greedy policy's crystal is {run.eval_abs_error[-1]:.2f} eV from the "
                     f"target")
        if baseline:
            text += (f", the random policy's median is {baseline['median_abs_error']:.2f} eV "
                     f"({baseline['metal_fraction']:.0%} of its crystals are metals); the mean "
                     f"reward of the last 10 % of training crystals is {late:.3f} against "
                     f"{baseline['mean_reward']:.3f} for random crystals, "
                     f"{_compared(late, baseline)}")
        if run.top:
            c = run.top[0]
            text += (f"; best crystal found {c['formula']}, {c['band_gap']:.2f} eV")
        out.append(text + ("." if run.finished else " (run in progress)."))
    return out


def _compared(late: float, baseline: dict) -> str:
    """How ``late`` compares with the random sample's mean reward: "the same within the
    random sample's noise" within two standard errors (``reward_sem``, 0 when unknown),
    else "above it" or "below it"."""
    margin = 2.0 * float(baseline.get("reward_sem", 0.0))
    if abs(late - baseline["mean_reward"]) <= margin:
        return f"the same within the random sample's noise (2 standard errors = {margin:.3f})"
    return "above it" if late > baseline["mean_reward"] else "below it"


def plot(runs: list[DFTRun], baseline: dict | None, path: str = FIGURE) -> str:
    """Training mean reward and best gap so far against DFT-evaluated crystals, the random
    policy's mean reward as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for run in runs:
        label = f"{run.agent} seed {run.seed}"
        ax.plot(run.crystals, run.mean_reward, label=label)
        bx.plot(run.crystals, run.best_gap, label=label)
    if baseline:
        ax.axhline(baseline["mean_reward"], color="grey", ls="--",
                   label=f"random policy ({baseline['crystals']} crystals)")
    if runs:
        bx.axhline(runs[0].target, color="k", ls=":", label="target")
    ax.set(xlabel="training crystals (DFT-evaluated)", ylabel="mean terminal reward per chunk")
    bx.set(xlabel="training crystals (DFT-evaluated)", ylabel="best band gap so far (eV)")
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="lower right")
    fig.suptitle("Band gap from Quantum ESPRESSO in the loop (perovskite454, small "
                 "vocabulary, charge-balance mask)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["DFTRun", "findings", "load_run", "load_runs",
           "plot",
           "random_baseline", "results_rows"]
