"""The DFT learning rows (crystaljax.benchmarks.dft_learning): totals over resumed parts,
the random baseline's rewards, and which short QE rows a finished run replaces."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import yaml

from crystaljax.benchmarks import dft_learning, table
from crystaljax.training.run import METRIC_FIELDS


def _run_dir(tmp_path, rows, total_env_steps=400):
    run = tmp_path / "band_gap_dft_dqn_seed0"
    (run / "crystals").mkdir(parents=True)
    config = {"env": {"task": "band-gap-perovskite454-small-v0", "target": 1.12,
                      "oracle_options": {"preset": "fast"}},
              "agent": {"name": "dqn", "total_env_steps": total_env_steps},
              "train": {"seed": 0}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in METRIC_FIELDS})
    top = [{"formula": "Li2CNF", "band_gap": 0.85, "reward": 0.93}]
    (run / "crystals" / "top_crystals.json").write_text(json.dumps(top))
    return run


def _row(steps, reward, best, calls, hits, wall, error=""):
    return {"env_steps": steps, "episodes": 16, "mean_terminal_reward": reward,
            "best_property": best, "dft_calls": calls, "cache_hits": hits, "wall_s": wall,
            "eval_median_abs_error": error, "eval_mean_reward": ""}


def test_totals_are_summed_over_resumed_parts(tmp_path):
    rows = [_row(80, 0.29, 0.2, 16, 0, 100.0), _row(160, 0.30, 0.6, 33, 0, 210.0, 1.12),
            # resumed: the new process's counters and clock start at zero
            _row(240, 0.35, 0.8, 10, 6, 90.0), _row(320, 0.40, 0.85, 18, 14, 150.0, 0.27)]
    run = dft_learning.load_run(str(_run_dir(tmp_path, rows)))
    assert run.parts == 2 and run.dft_calls == 33 + 18 and run.cache_hits == 14
    assert run.wall_s == pytest.approx(210.0 + 150.0)
    assert list(run.crystals) == [16, 32, 48, 64]
    assert list(run.eval_steps) == [160, 320] and run.eval_abs_error[-1] == pytest.approx(0.27)
    assert not run.finished
    lines = dft_learning.results_rows([run], None)
    row = next(line for line in lines if line.startswith("| dqn"))
    assert "in progress (64 of 80 crystals)" in row and "0.85 eV (Li2CNF)" in row
    assert lines[-1].startswith("* dqn seed 0: 64 training crystals") and "0.27 eV" in lines[-1]
    assert table.replaced_by_dft_runs([run]) == set()  # unfinished: replaces nothing


def test_finished_run_replaces_the_short_qe_row_of_its_agent(tmp_path):
    rows = [_row(80 * (i + 1), 0.3, 0.5, 16, 0, 60.0 * (i + 1)) for i in range(5)]
    run = dft_learning.load_run(str(_run_dir(tmp_path, rows)))
    assert run.finished
    assert table.replaced_by_dft_runs([run]) == {("band_gap", "perovskite454", "dqn")}
    lines = dft_learning.results_rows([run], {"median_abs_error": 1.12, "metal_fraction": 0.92,
                                              "mean_reward": 0.29, "crystals": 50})
    assert any(line.startswith("| dqn") and "| finished |" in line for line in lines)
    assert "0.300 against 0.290 for random crystals, above it" in lines[-1]


@pytest.mark.parametrize("mean, sem, words", [
    (0.29, 0.001, "above it"), (0.31, 0.001, "below it"),
    (0.29, 0.01, "the same within the random sample's noise (2 standard errors = 0.020)")])
def test_late_reward_is_compared_with_the_random_samples_noise(tmp_path, mean, sem, words):
    rows = [_row(80 * (i + 1), 0.3, 0.5, 16, 0, 60.0 * (i + 1)) for i in range(5)]
    run = dft_learning.load_run(str(_run_dir(tmp_path, rows)))
    baseline = {"median_abs_error": 1.12, "metal_fraction": 0.92, "mean_reward": mean,
                "reward_sem": sem, "crystals": 50}
    assert f"random crystals, {words}" in dft_learning.results_rows([run], baseline)[-1]


def test_random_baseline_rewards_are_the_band_gap_reward(tmp_path):
    sample = {"settings": {"charge_balance": {"gaps": [0.0, 0.0, 1.12, 0.5], "failed": 0}}}
    path = tmp_path / "mask.json"
    path.write_text(json.dumps(sample))
    base = dft_learning.random_baseline(1.12, 1.0, str(path))
    rewards = [math.exp(-1.12**2)] * 2 + [1.0, math.exp(-0.62**2)]
    assert base["reward_sem"] == pytest.approx(np.std(rewards, ddof=1) / 2.0)
    assert base["mean_reward"] == pytest.approx(np.mean(rewards), rel=1e-5)
    assert base["metal_fraction"] == 0.5 and base["best_gap"] == 1.12
    assert base["median_abs_error"] == pytest.approx(np.median([1.12, 1.12, 0.0, 0.62]))
    assert dft_learning.random_baseline(1.12, 1.0, str(tmp_path / "none.json")) is None
