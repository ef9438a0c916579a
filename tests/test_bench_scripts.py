"""The benchmark scripts run end to end at tiny budgets, and their merge modes combine
per-process results files (how GPU and CPU runs are put together)."""

import json
import os
import sys

import numpy as np
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scripts import bench_agents, benchmark_table  # noqa: E402

TINY_NET = {"node_embed_dim": 4, "focus_embed_dim": 2, "encoder_hidden": [8, 8], "num_blocks": 1,
            "block_hidden": [8, 8], "conv_hidden": [8, 8], "head_hidden": [8],
            "set2set_iterations": 1, "element_features": True, "action_head": "pairwise",
            "composition_readout": True}


@pytest.fixture
def tiny_settings(tmp_path):
    settings = {"common": {"network": TINY_NET},
                "dqn": {"env_steps": 80, "num_envs": 4, "learning_starts": 20, "batch_size": 8,
                        "buffer_size": 80},
                "ppo": {"env_steps": 80, "num_envs": 4, "num_steps": 5, "num_minibatches": 2}}
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def test_bench_agents_runs_and_merges_per_agent_files(tmp_path, tiny_settings):
    parts = []
    for agent in ("dqn", "ppo"):
        out = str(tmp_path / f"agents_{agent}")
        result = bench_agents.main(["--agents", agent, "--targets", "3.0", "--seeds", "2",
                                    "--eval-every", "40", "--eval-episodes", "8",
                                    "--settings", tiny_settings, "--out", out, "--no-markdown"])
        res = result["targets"]["3.0"]["agents"][agent]
        assert [c["env_steps"] for c in res["curve"]] == [0, 40, 80]
        assert len(res["seeds"]) == 2 and res["env_steps"] == 80
        assert all(0.0 <= r <= 1.0 for c in res["curve"] for r in c["mean_reward"])
        parts.append(out + ".json")
    merged = bench_agents.main(["--merge", *parts, "--out", str(tmp_path / "all"),
                                "--no-markdown"])
    assert set(merged["targets"]["3.0"]["agents"]) == {"dqn", "ppo"}
    assert (tmp_path / "all.png").stat().st_size > 0
    table = bench_agents.markdown(merged)
    assert "| 3.0 | dqn | 80 |" in table and "| 3.0 | ppo | 80 |" in table
    assert "uniform random" in table


def test_benchmark_table_density_rows_and_merge(tmp_path, tiny_settings):
    out = str(tmp_path / "table_a")
    first = benchmark_table.main(["--properties", "density", "--cells", "perovskite",
                                  "--agents", "ppo", "--seeds", "2", "--eval-every", "40",
                                  "--eval-episodes", "8", "--settings", tiny_settings,
                                  "--out", out])
    (row,) = first["rows"]
    assert row["agent"] == "ppo" and row["steps"] == [0, 40, 80]
    assert np.asarray(row["curve"]).shape == (2, 3)
    assert "| density (target 3 g/cm3) | perovskite | in-graph | ppo | 80 |" in open(
        out + ".md").read()
    second = benchmark_table.main(["--properties", "density", "--cells", "bcc4", "--agents",
                                   "dqn", "--seeds", "2", "--eval-every", "40",
                                   "--eval-episodes", "8", "--settings", tiny_settings,
                                   "--out", str(tmp_path / "table_b")])
    assert second["rows"][0]["cell"] == "bcc4"
    merged = benchmark_table.main(["--merge", out + ".json", str(tmp_path / "table_b.json"),
                                   "--out", str(tmp_path / "table")])
    assert {(r["agent"], r["cell"]) for r in merged["rows"]} == {("ppo", "perovskite"),
                                                                 ("dqn", "bcc4")}
    assert set(merged["random"]) == {"density/perovskite", "density/bcc4"}
    assert json.load(open(tmp_path / "table.json"))["rows"] == merged["rows"]
    assert (tmp_path / "table.png").exists()
    missing = benchmark_table.missing_rows(merged)
    assert "density on perovskite: dqn, rainbow, sac" in missing
    assert "density on bcc4: ppo, rainbow, sac" in missing
    assert "band_gap on bcc4: dqn, ppo, rainbow, sac" in missing and len(missing) == 9
    assert "Not run" in open(tmp_path / "table.md").read()
    (density,) = benchmark_table.paper_comparison(merged)  # density rows only: one sentence
    worst = min(min(r["final_mean_reward"]) for r in merged["rows"])
    assert density.startswith("Density (paper:") and f"{worst:.3f}" in density
    assert "## Against the paper" in open(tmp_path / "table.md").read()


def test_paper_comparison_counts_dft_rows():
    row = {"property": "band_gap", "agent": "dqn", "cell": "bcc4", "env_steps": 8,
           "final_mean_reward": [0.3, 0.3], "best_property": [0.0, 1.4], "dft_calls": 3,
           "cache_hits": 1, "dft_status_counts": {"OK": 3, "TIMEOUT": 1}}
    (text,) = benchmark_table.paper_comparison({"rows": [row]})
    assert "1 QE rows at 8 env steps per seed, 4 crystals evaluated, 1 DFT failure(s)" in text
    assert "In 1 of 2 seeds the best crystal found was a metal" in text
