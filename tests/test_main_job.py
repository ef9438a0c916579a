"""The main job's driver (crystaljax.training.main_job) end to end on a tiny run: train, the
greedy policy beside the random policy, verify with a host oracle, main_job.json."""

import json

from test_training import tiny_config

from crystaljax.training import main_job


def test_main_job_trains_compares_and_verifies(tmp_path, capsys):
    path = tiny_config(tmp_path)
    record = main_job.run(path, top=1, oracle="chgnet-host", preset=None, relax="volume",
                          random_episodes=16, progress=False)
    out = capsys.readouterr().out
    run_dir = record["run_dir"]
    assert "greedy - random" in out and "recomputed with chgnet-host" in out
    assert "report.html" in out
    saved = json.loads(open(f"{run_dir}/main_job.json").read())
    c = saved["comparison"]
    assert c["random_episodes"] == 16 and c["greedy_episodes"] == 8
    assert -1.0 <= c["random_mean_reward"] <= 1.0 and -1.0 <= c["greedy_mean_reward"] <= 1.0
    verify = json.loads(open(f"{run_dir}/verify.json").read())
    assert len(verify["crystals"]) == 1 and verify["settings"]["oracle"] == "chgnet-host"


def test_main_job_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    assert main_job.main([str(tmp_path / "missing.yaml"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("main job: error:")


def test_the_shipped_main_job_config_loads():
    from crystaljax.training.config import load_run_config

    config = load_run_config("configs/main_job.yaml")
    assert config.env.oracle == "chgnet" and config.env.property == "bulk_modulus"
    assert config.train.time_budget_minutes is not None
