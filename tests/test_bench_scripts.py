"""The benchmark scripts run end to end at tiny budgets, write the one results format, and
their merge modes combine results files of either script (how GPU and CPU runs are put
together)."""

import json
import os
import sys

import numpy as np
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from crystaljax.benchmarks import agents, table  # noqa: E402
from scripts import bench_agents, benchmark_table  # noqa: E402

TINY_NET = {"node_embed_dim": 4, "focus_embed_dim": 2, "encoder_hidden": [8], "num_blocks": 1,
            "block_hidden": [8], "conv_hidden": [8], "head_hidden": [8],
            "set2set_iterations": 1}


@pytest.fixture
def tiny_settings(tmp_path):
    settings = {"common": {"network": TINY_NET},
                "dqn": {"env_steps": 80, "num_envs": 4, "learning_starts": 20, "batch_size": 8,
                        "buffer_size": 80, "train_frequency": 4},
                "ppo": {"env_steps": 80, "num_envs": 4, "num_steps": 5, "num_minibatches": 2}}
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


@pytest.mark.xdist_group("tiny-dqn-sweep")  # shares its DQN programs with test_sweep.py
def test_scripts_run_and_merge_each_others_files(tmp_path, tiny_settings):
    tiny = ["--seeds", "2", "--eval-every", "40", "--eval-episodes", "8", "--settings",
            tiny_settings, "--no-progress"]
    first = bench_agents.main(["--agents", "dqn", "--targets", "3.0", "--out",
                               str(tmp_path / "agents_dqn"), "--no-markdown", *tiny])
    (run,) = first.runs
    assert run.agent == "dqn" and run.eval_steps == [0, 40, 80] and run.env_steps == 80
    assert np.asarray(run.eval_mean_reward).shape == (2, 3)
    assert all(0.0 <= r <= 1.0 for seed in run.eval_mean_reward for r in seed)
    assert json.load(open(tmp_path / "agents_dqn.json"))["format"] == "crystaljax-sweeps/1"

    second = benchmark_table.main(["--properties", "density", "--cells", "perovskite",
                                   "--agents", "ppo", "--out", str(tmp_path / "table_ppo"), *tiny])
    (row,) = table.rows(second)
    assert row["agent"] == "ppo" and row["steps"] == [0, 40, 80]
    assert np.asarray(row["curve"]).shape == (2, 3)
    assert "| density (target 3 g/cm3) | perovskite | in-graph | ppo | 80 |" in open(
        tmp_path / "table_ppo.md").read()

    parts = [str(tmp_path / "agents_dqn.json"), str(tmp_path / "table_ppo.json")]
    merged = bench_agents.main(["--merge", *parts, "--out", str(tmp_path / "all"),
                                "--settings", tiny_settings, "--no-markdown"])
    assert [r.agent for r in merged.runs] == ["dqn", "ppo"]
    assert (tmp_path / "all.png").stat().st_size > 0
    text = agents.markdown(merged)
    assert "| 3.0 | dqn | 80 |" in text and "| 3.0 | ppo | 80 |" in text
    assert "uniform random" in text and "Agent settings (" in text

    merged = benchmark_table.main(["--merge", *parts, "--out", str(tmp_path / "table")])
    assert {(r["agent"], r["cell"]) for r in table.rows(merged)} == {("dqn", "perovskite"),
                                                                     ("ppo", "perovskite")}
    assert (tmp_path / "table.png").exists()
    missing = table.missing_rows(table.rows(merged))
    assert "density on perovskite: rainbow, sac" in missing
    assert "band_gap on bcc4: dqn, ppo, rainbow, sac" in missing and len(missing) == 9
    md = open(tmp_path / "table.md").read()
    assert "Not run" in md and "## Against the paper" in md
    (density,) = table.paper_comparison(table.rows(merged))  # density rows only: one sentence
    worst = min(min(r["final_mean_reward"]) for r in table.rows(merged))
    assert density.startswith("Density (paper:") and f"{worst:.3f}" in density


def test_paper_comparison_counts_dft_rows():
    row = {"property": "band_gap", "agent": "dqn", "cell": "bcc4", "env_steps": 8,
           "final_mean_reward": [0.3, 0.3], "best_property": [0.0, 1.4], "dft_calls": 3,
           "cache_hits": 1, "dft_status_counts": {"OK": 3, "TIMEOUT": 1}}
    (text,) = table.paper_comparison([row])
    assert "1 QE rows at 8 env steps per seed, 4 crystals evaluated, 1 DFT failure(s)" in text
    assert "In 1 of 2 seeds the best crystal found was a metal" in text


def test_qe_overrides_fit_the_dft_budget():
    own = {"num_envs": 8, "num_steps": 25, "num_minibatches": 4, "buffer_size": 1}
    assert table.qe_overrides("ppo", own, 10, 2) == {"num_envs": 2, "num_steps": 5,
                                                     "num_minibatches": 1}
    assert table.qe_overrides("dqn", {"buffer_size": 100}, 10, 2) == {
        "buffer_size": 100, "num_envs": 2, "learning_starts": 0}


def test_bench_train_measures_every_column_in_fresh_processes(tmp_path, tiny_settings):
    from scripts import bench_train

    out = tmp_path / "train.json"
    result = bench_train.main(["--agents", "dqn", "--envs", "2", "--warm-envs", "2",
                               "--repeats", "1", "--settings", tiny_settings, "--out", str(out),
                               "--no-markdown"])
    assert json.load(open(out)) == result
    assert result["machine"] and result["backend"] == "cpu"
    (row,) = result["rows"]
    assert "error" not in row, row
    assert row["envs"] == 2 and row["env_steps_per_s"] > 0 and row["updates_per_s"] > 0
    assert row["compile_s"] > 0 and row["compile_warm_cache_s"] > 0
    assert row["update_gflop"] > 0 and row["env_only_steps_per_s"] > 0
    assert row["peak_rss_gib"] > 0
    # a chunk of >= 200 env steps; one update every train_frequency (4 here) env steps
    assert row["batch_size"] == 8 and row["updates_per_chunk"] == 200 // 4
    text = bench_train.tt.markdown(result, "train.json")
    assert "| dqn | 2 |" in text and result["machine"] in text


def test_bench_train_measures_one_ppo_iteration_per_chunk(tiny_settings):
    from crystaljax.benchmarks import train_throughput as tt

    row = tt.measure_cell("ppo", 2, tiny_settings, repeats=1, env_steps=20)
    # one rollout of the settings' 5 steps per env, 2 minibatches x 4 epochs
    assert row["env_steps_per_chunk"] == 10 and row["updates_per_chunk"] == 8
    assert row["batch_size"] == 5 and row["update_gflop"] > 0


def test_bench_train_update_keeps_rows_it_did_not_measure():
    from crystaljax.benchmarks import train_throughput as tt

    old = {"rows": [{"agent": "ppo", "envs": 8, "v": 1}, {"agent": "dqn", "envs": 8, "v": 1},
                    {"agent": "sac", "envs": 8, "v": 1}]}
    new = {"machine": "m", "rows": [{"agent": "ppo", "envs": 8, "v": 2},
                                    {"agent": "dqn", "envs": 256, "v": 2}]}
    merged = tt.merge_rows(old, new)
    assert merged["machine"] == "m"
    assert [(r["agent"], r["envs"], r["v"]) for r in merged["rows"]] == [
        ("dqn", 8, 1), ("dqn", 256, 2), ("ppo", 8, 2), ("sac", 8, 1)]


def test_bench_train_reports_a_failed_cell_instead_of_stopping(tmp_path, monkeypatch):
    from crystaljax.benchmarks import train_throughput as tt

    monkeypatch.setattr(tt.sys, "executable", str(tmp_path / "no-python"))
    row = tt._run_cell_process("ppo", 2, str(tmp_path), None, 1, True, 60.0)
    assert row["agent"] == "ppo" and "error" in row


def test_env_step_split_over_two_host_devices_gives_the_same_crystals(tmp_path):
    """bench_mlip --host-devices: the envs split over two XLA host devices (shard_map) make
    the same crystals with the same CHGNet energies as one device. A subprocess, since XLA's device
    count is fixed when JAX starts."""
    import subprocess

    code = """
import numpy as np
import crystaljax
from crystaljax.benchmarks.mlip import _random_episodes
import jax
assert len(jax.devices()) == 2, jax.devices()
# an expensive in-graph oracle (CHGNet energy: a cond on "any env finished" per device)
env, params = crystaljax.make("density-perovskite-small-v0", template="rocksalt",
                              property="energy", target=-3.0, oracle="chgnet",
                              oracle_options={"relax": "none"})
one = _random_episodes(env, params, 8, 2, 0, devices=1)
two = _random_episodes(env, params, 8, 2, 0, devices=2)
assert [s.composition for s in one.structures] == [s.composition for s in two.structures]
np.testing.assert_allclose(one.values, two.values, rtol=1e-5)
try:
    _random_episodes(env, params, 7, 1, 0, devices=2)
except ValueError as exc:
    assert "do not split" in str(exc)
else:
    raise AssertionError("7 envs on 2 devices")
print("ok", len(one.values))
"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", "16"]


def test_throughput_baseline_times_a_second_oracle_on_the_same_crystals():
    """bench_mlip --throughput --baseline-set: the same rounds with a second in-graph oracle
    (here the full graph instead of the symmetry-reduced one): same statuses, a speed-up,
    and a table of its own in the BENCHMARKS.md section."""
    from crystaljax.benchmarks import mlip

    result = mlip.side_by_side(
        "density-perovskite-small-v0", [4], host_workers=0,
        overrides={"template": "rocksalt", "property": "energy", "target": -3.0,
                   "oracle_options": {"relax": "none"}},
        baseline={"oracle_options": {"symmetry": False}})
    (row,) = result["rows"]
    assert row["baseline_same_crystals"] is True
    assert row["baseline_same_status"] == 4 and row["baseline_per_second"] > 0
    assert row["baseline_max_relative_difference"] < 1e-4  # energies, eV/atom
    text = mlip.throughput_markdown(result, "x.json")
    assert "baseline crystals/s" in text and "'symmetry': False" in text
