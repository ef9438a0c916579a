"""`crystaljax train` / `evaluate` end to end on a tiny config, and checkpoint resume."""

import json
import os

import jax
import numpy as np
import pytest
import yaml

from crystaljax.cli import main
from crystaljax.config import ConfigError
from crystaljax.training.config import load_run_config
from crystaljax.training.run import Trainer

TINY_NETWORK = {"node_embed_dim": 8, "focus_embed_dim": 4, "encoder_hidden": [16, 8],
                "num_blocks": 1, "block_hidden": [16, 8], "conv_hidden": [16, 8],
                "head_hidden": [8]}


def tiny_config(tmp_path, **agent):
    cfg = {
        "env": {"task": "density-perovskite-small-v0", "num_rbf": 4},
        "agent": {"name": "dqn", "total_env_steps": 240, "num_envs": 4, "learning_starts": 40,
                  "batch_size": 8, "buffer_size": 200, "network": TINY_NETWORK, **agent},
        "train": {"chunk_iterations": 20, "eval_episodes": 8, "eval_every_chunks": 2,
                  "runs_dir": str(tmp_path / "runs"), "name": "tiny", "top_k": 3},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_cli_train_writes_every_artefact_and_evaluates(tmp_path, capsys):
    path = tiny_config(tmp_path)
    assert main(["train", path, "seed=2", "--quiet"]) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "tiny"
    assert f"run directory: {run_dir}" in out and "best crystals found" in out
    for name in ("config.yaml", "metrics.csv", "learning_curve.png", "eval.json",
                 "crystals/top_crystals.json"):
        assert (run_dir / name).is_file(), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run_dir / "tb"))
    assert os.listdir(run_dir / "checkpoints")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["seed"] == 2 and saved["agent"]["name"] == "dqn"
    assert saved["agent"]["tau"] == 0.01 and "num_blocks" in saved["agent"]["network"]  # in full
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3  # header + 60 iterations / 20 per chunk
    top = json.loads((run_dir / "crystals" / "top_crystals.json").read_text())
    assert 1 <= len(top) <= 3
    assert all((run_dir / "crystals" / rec["cif"]).is_file() for rec in top)
    assert top[0]["reward"] >= top[-1]["reward"]
    rec = top[0]  # the stored property matches the exported crystal
    from pymatgen.core import Structure

    s = Structure.from_file(str(run_dir / "crystals" / rec["cif"]))
    assert rec["density"] == pytest.approx(float(s.density), rel=1e-4)

    assert main(["evaluate", str(run_dir), "--episodes", "8"]) == 0
    result = json.loads((run_dir / "evaluate.json").read_text())
    assert result["eval_episodes"] == 8 and result["env_steps"] == 240


def test_resume_restores_identical_state(tmp_path):
    config = load_run_config(tiny_config(tmp_path, total_env_steps=160))
    run_dir = str(tmp_path / "resume-run")
    trainer = Trainer(config, run_dir)
    trainer.run(progress=False)
    final = jax.tree.map(np.asarray, trainer.state)
    trainer.close()
    again = Trainer(config, run_dir, resume=True)
    try:
        assert again.iteration == 40
        restored = jax.tree.map(np.asarray, again.state)
        jax.tree.map(np.testing.assert_array_equal, restored, final)
    finally:
        again.close()


def test_resumed_part_takes_its_own_time_budget_and_keeps_the_saved_config(tmp_path,
                                                                          monkeypatch, capsys):
    """``train --resume RUN --budget-minutes M``: the part runs under M, config.yaml is not
    rewritten (the next plain ``--resume`` gets the saved budget again)."""
    import crystaljax.training.run as run_module

    path = tiny_config(tmp_path, total_env_steps=160)
    assert main(["train", path, "--quiet"]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    saved = (run_dir / "config.yaml").read_text()
    budgets = []

    class Recording(run_module.Trainer):
        def __init__(self, config, *args, **kwargs):
            budgets.append(config.train.time_budget_minutes)
            super().__init__(config, *args, **kwargs)

    monkeypatch.setattr(run_module, "Trainer", Recording)
    assert main(["train", "--resume", str(run_dir), "--budget-minutes", "7.5", "--quiet"]) == 0
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert budgets == [7.5, None]
    assert (run_dir / "config.yaml").read_text() == saved
    assert "env_steps" in json.loads((run_dir / "eval.json").read_text())
    capsys.readouterr()


def test_bad_run_configs(tmp_path):
    with pytest.raises(ConfigError, match="unknown section"):
        load_run_config({"envs": {}})
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['sead'\]; allowed: "):
        load_run_config({"train": {"sead": 1}})
    with pytest.raises(ConfigError, match=r"agent: unknown key\(s\) \['lr'\]; allowed: .*learning_rate"):
        load_run_config({}, ["agent=rainbow", "lr=1e-3"])
    cfg = load_run_config({"env": {"task": "density-perovskite-small-v0"}},
                          ["agent=rainbow", "seed=3", "target=5.0", "learning_rate=1e-3",
                           "agent.gamma=0.9", "agent.network.head_hidden=[32]"])
    assert cfg.agent_name == "rainbow" and cfg.agent.learning_rate == 1e-3
    assert cfg.agent.gamma == 0.9 and tuple(cfg.agent.network.head_hidden) == (32,)
    assert cfg.train.seed == 3 and cfg.env.target == 5.0
    assert cfg.to_dict()["agent"] == {"name": "rainbow", "learning_rate": 1e-3, "gamma": 0.9,
                                      "network": {"head_hidden": [32]}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"agent": {"name": "dqn", "learning_rat": 0.1},
                                   "train": {"runs_dir": str(tmp_path)}}))
    assert main(["train", str(bad), "--quiet"]) == 2  # clear one-line error, no traceback


def test_time_budget_estimate_leaves_out_the_compile_chunk():
    from types import SimpleNamespace

    from crystaljax.training.config import TrainSettings

    def over(elapsed, chunks, **settings):
        fake = SimpleNamespace(settings=TrainSettings(**settings))
        return Trainer._over_budget(fake, elapsed, chunks)

    assert not over(1e9, [1.0])  # no budget: never stops
    # 10 min budget; slowest steady chunk 80 s (the 200 s compile chunk is left out)
    assert not over(439.0, [200.0, 60.0, 80.0], time_budget_minutes=10, eval_episodes=4)
    assert over(441.0, [200.0, 60.0, 80.0], time_budget_minutes=10, eval_episodes=4)
    # with only the first chunk seen, it is the estimate
    assert over(201.0, [200.0], time_budget_minutes=10, eval_episodes=4)


def test_time_budget_stops_early_with_checkpoint_and_evaluation(tmp_path, capsys):
    path = tiny_config(tmp_path)
    # any chunk takes longer than this budget: the run stops after its first chunk
    assert main(["train", path, "train.time_budget_minutes=1e-6", "--quiet"]) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "tiny"
    assert "stopped early: time budget of 1e-06 min reached after 80 of 240 env steps" in out
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 1
    summary = json.loads((run_dir / "eval.json").read_text())
    assert summary["env_steps"] == 80 and summary["eval_episodes"] == 8
    assert summary["stopped_early"].startswith("time budget")
    # the in-graph density oracle keeps no host counters; a QE run's are in test_qe_env
    assert summary["oracle"] == {"evaluations": 0, "computed": 0, "cache_hits": 0,
                                 "by_status": {}}
    config = load_run_config(str(run_dir / "config.yaml"))
    again = Trainer(config, str(run_dir), resume=True)  # resumes from the early checkpoint
    try:
        assert again.iteration == 20
    finally:
        again.close()
    with pytest.raises(ConfigError, match="time_budget_minutes"):
        load_run_config(path, {"train.time_budget_minutes": -3})


def test_metrics_counters_include_the_evaluation_oracle_calls(tmp_path):
    """A host oracle's counters in the last metrics row are read after the chunk's greedy
    evaluation, so a run's (or a resumed part's) last row equals eval.json's totals."""
    path = tiny_config(tmp_path)
    overrides = ["oracle=chgnet-host", "env.oracle_options.relax=none",
                 "env.oracle_options.workers=0", "agent.total_env_steps=80"]
    assert main(["train", path, *overrides, "--quiet"]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    oracle = json.loads((run_dir / "eval.json").read_text())["oracle"]
    assert oracle["evaluations"] > 16  # 16 training crystals, then the evaluation's
    assert int(last["dft_calls"]) == oracle["computed"]
    assert int(last["cache_hits"]) == oracle["cache_hits"]


def test_top_crystals_hold_one_decoration_per_symmetry_class(tmp_path):
    """O-F-O and F-O-O on the three X sites of the cubic perovskite are one crystal (a
    3-fold axis maps one onto the other); swapping A and B is another crystal."""
    from crystaljax.templates.prototypes import prototype
    from crystaljax.training.artifacts import EquivalentCrystals, TopCrystals

    template = prototype("cg-perovskite-4.27")
    equivalent, top = EquivalentCrystals(), TopCrystals(5)
    decorations = {"Sr-Ti-O-F-O": 0.9, "Sr-Ti-F-O-O": 0.8, "Ti-Sr-O-F-O": 0.7}
    structures = {}
    for symbols, reward in decorations.items():
        key = f"{template.name}:{symbols}"
        structures[key] = template.to_structure(symbols.split("-"))
        name = equivalent.name(key, structures[key])
        top.offer(reward, name, {"key": key, "formula": "x", "reward": reward})
    assert equivalent.name(f"{template.name}:Sr-Ti-F-O-O", None) == f"{template.name}:Sr-Ti-O-F-O"
    assert [r["reward"] for r in top.best()] == [0.9, 0.7]
    top.export(str(tmp_path), structures, pictures=False)
    assert len(json.loads((tmp_path / "crystals" / "top_crystals.json").read_text())) == 2
