"""The multi-seed sweep on a tiny config: per-seed curves of the expected length, and the one
results format round-trips."""

import json
import math

import numpy as np
import pytest

from crystaljax.benchmarks.results import Results
from crystaljax.training.sweep import TOP_K, SweepResult, run_sweep, steps_to_fraction

TINY_NET = {"node_embed_dim": 4, "focus_embed_dim": 2, "encoder_hidden": [8], "num_blocks": 1,
            "block_hidden": [8], "conv_hidden": [8], "head_hidden": [8],
            "set2set_iterations": 1}


# the DQN settings of test_bench_scripts.py: the same programs, compiled once per test run
# (persistent compilation cache) when both run on one worker
@pytest.mark.xdist_group("tiny-dqn-sweep")
def test_sweep_two_seeds_curves_and_round_trip(tmp_path):
    result = run_sweep("dqn", "density-perovskite-small-v0", {"target": 3.0},
                       {"network": TINY_NET, "num_envs": 4, "learning_starts": 20,
                        "batch_size": 8, "buffer_size": 80},
                       seeds=2, env_steps=80, eval_every=40, eval_episodes=8,
                       random_episodes=64, progress=False)
    assert result.seeds == 2 and result.env_steps == 80 and result.eval_every == 40
    assert result.eval_steps == [0, 40, 80] and result.chunk_steps == [40, 80]
    for curve in (result.eval_mean_reward, result.eval_median_abs_error):
        assert np.asarray(curve).shape == (2, 3)
    assert np.asarray(result.train_mean_reward).shape == (2, 2)
    assert np.asarray(result.chunk_metrics["episodes_done"]).shape == (2, 2)
    assert np.asarray(result.chunk_metrics["episodes_done"]).sum() == 2 * 80 / 5  # 5-site cell
    assert len(result.best_reward) == 2 and len(result.skipped_updates) == 2
    assert all(0.0 <= r <= 1.0 for r in result.best_reward)
    assert len(result.steps_to_criterion()) == 2 and len(result.final_mean_reward()) == 2
    assert 0.0 <= result.random["mean_reward"] <= 1.0 and result.random["episodes"] == 64
    assert result.train_s > 0 and math.isfinite(result.env_steps_per_s)
    assert result.oracle == "in-graph" and result.property == "density"
    # each seed's distinct best crystals, best first, as a run directory would collect them
    assert len(result.top_crystals) == 2
    for seed, top in enumerate(result.top_crystals):
        assert 1 <= len(top) <= TOP_K
        rewards = [c["reward"] for c in top]
        assert rewards == sorted(rewards, reverse=True)
        assert rewards[0] >= result.best_reward[seed] - 1e-6  # greedy crystals may beat it
        assert len({(c["template_id"], tuple(c["tokens"])) for c in top}) == len(top)
        assert {c["found_by"] for c in top} <= {"training", "greedy evaluation"}

    again = SweepResult.from_json(json.loads(json.dumps(result.to_json())))
    assert json.dumps(again.to_json()) == json.dumps(result.to_json())
    path = str(tmp_path / "runs.json")
    Results([result], {"note": "test"}).save(path)
    loaded = Results.load(path)
    assert loaded.meta == {"note": "test"} and loaded.runs[0].key == result.key
    assert json.dumps(loaded.runs[0].to_json()) == json.dumps(result.to_json())


def test_steps_to_fraction():
    assert steps_to_fraction([0, 10, 20, 30], [0.0, 0.5, 0.95, 1.0]) == 20
    assert steps_to_fraction([0, 10], [1.0, 0.5]) is None  # never rises
    assert steps_to_fraction([10, 20, 30], [math.nan, 0.2, 1.0]) == 30  # NaN: no episode ended
