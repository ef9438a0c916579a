"""Configuration is parsed once and checked when loaded: every bad value is one clear
line (a ConfigError or exit status 2), never a traceback or a silently wrong run."""

import math

import numpy as np
import pytest
import yaml

import crystaljax
from crystaljax.cli import main
from crystaljax.config import ConfigError, from_mapping, option, parse_overrides, parse_value
from crystaljax.training.config import TrainSettings, load_run_config

TASK = {"env": {"task": "density-perovskite-small-v0"}}


def test_parse_overrides_reads_yaml_values_and_rejects_malformed_items():
    assert parse_overrides(["seed=3", "target=5.0", "vocab=[Na, Cl]", "x=true", "lr=1e-3",
                            "name=abc", "y=null"]) == {
        "seed": 3, "target": 5.0, "vocab": ["Na", "Cl"], "x": True, "lr": 1e-3,
        "name": "abc", "y": None}
    assert parse_value("nan") == "nan"  # stays text: a NaN is never made up from a typo
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_overrides(["seed"])


def test_typed_fields_check_types_bounds_and_keys():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Opts:
        rate: float = option(1e-3, gt=0)
        count: int = option(1, ge=1)
        flag: bool = False
        sizes: tuple[int, ...] = (4,)

    assert from_mapping(Opts, {"rate": "2e-4", "count": 3.0, "sizes": [8, 8]}) == Opts(2e-4, 3,
                                                                                        False, (8, 8))
    for values, message in [({"rate": -1}, "rate must be > 0"), ({"rate": math.nan}, "finite"),
                            ({"count": 1.5}, "count must be an integer"),
                            ({"count": "abc"}, "count must be an integer"),
                            ({"flag": "yes"}, "true or false"), ({"sizes": 5}, "must be a list"),
                            ({"colour": 1}, r"unknown key\(s\) \['colour'\]; allowed: \['count'")]:
        with pytest.raises(ConfigError, match=message):
            from_mapping(Opts, values)


@pytest.mark.parametrize("override, message", [
    ("seed=abc", "train.seed must be an integer, got 'abc'"),
    ("seed=1.5", "train.seed must be an integer, got 1.5"),
    ("top_k=abc", "train.top_k must be an integer"),
    ("eval_episodes=-1", "train.eval_episodes must be >= 1"),
    ("chunk_iterations=0", "train.chunk_iterations must be >= 1"),
    ("vocab=5", "vocab must be 'small', 'medium', 'large' or a list of element symbols"),
    ("template_weights=[.nan, 1]", "template_weights must be finite numbers >= 0"),
    ("penalty=.nan", "penalty must be a finite number"),
    ("floor=.nan", "floor must be a finite number"),
    ("agent.learning_rate=-1", "learning_rate must be > 0"),
    ("train.name=../escape", "train.name must be a plain directory name"),
    ("env.oracle_options={colour: x}", "oracle 'analytic' takes no options"),
    ("env.graph={cutoff: abc}", "graph.cutoff must be a number"),
    ("env.graph={max_neighbors: 2.5}", "graph.max_neighbors must be an integer"),
    ("agent.network.block_hidden=[]", "block_hidden must have at least one width"),
])
def test_bad_values_fail_at_load_time(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_run_config(TASK, [override])


def test_qe_oracle_options_are_typed_and_checked_without_starting_anything():
    for options, message in [({"colour": "x"}, r"unknown key\(s\) \['colour'\]; allowed: "),
                             ({"time_limit": math.nan}, "time_limit must be a finite number")]:
        with pytest.raises(ConfigError, match=message):
            crystaljax.make("band-gap-perovskite-small-v0", oracle_options=options)


def test_template_weights_with_nan_no_longer_pick_template_zero():
    with pytest.raises(ConfigError, match="template_weights"):
        crystaljax.make("density-cubic-mini-small-v0", template_weights=[np.nan, 1, 1, 1, 1])
    env, params = crystaljax.make("density-cubic-mini-small-v0", template_weights=[0, 1, 1, 1, 1])
    assert float(params.template_probs[0]) == 0.0


def test_the_package_imports_its_wrappers():
    """The README's usage: ``import crystaljax; crystaljax.wrappers.GymnasiumEnv(...)``."""
    import subprocess
    import sys

    code = "import crystaljax; print(crystaljax.wrappers.GymnasiumEnv.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "GymnasiumEnv", out.stderr


def test_train_settings_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="chunk_iterations must be >= 1"):
        TrainSettings(chunk_iterations=0)


def _run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("argv", [
    ["train", "{cfg}", "seed=abc"],
    ["train", "{cfg}", "agent.learning_rate=-1"],
    ["train", "{cfg}", "train.name=../x"],
    ["train", "{cfg}", "--resume", "{runs}/some-run"],
    ["train", "{cfg}", "--budget-minutes", "5"],  # only for a resumed part
    ["train", "--resume", "{runs}/started", "--budget-minutes", "0"],
    ["rollout", "--envs", "0"],
    ["rollout", "density-perovskite-small-v0", "vocab=5"],
    ["evaluate", "{runs}", "--episodes", "0"],
    ["evaluate", "{runs}"],
    ["evaluate", "{runs}/started"],  # a run whose start failed: config.yaml, no checkpoint
])
def test_cli_prints_one_line_exits_2_and_leaves_no_run_directory(tmp_path, capsys, argv):
    runs = tmp_path / "runs"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**TASK, "train": {"runs_dir": str(runs)}}))
    runs.mkdir()
    started = runs / "started"
    (started / "checkpoints").mkdir(parents=True)
    (started / "config.yaml").write_text(yaml.safe_dump(TASK))
    argv = [a.format(cfg=cfg, runs=runs) for a in argv]
    code, err = _run_cli(capsys, *argv)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("crystaljax: error: "), err
    assert [p.name for p in runs.iterdir()] == ["started"]
    assert not (tmp_path / "x").exists()


def test_a_new_property_and_oracle_are_one_registry_entry_each():
    """Registering a property and an in-graph oracle is all it takes: tasks, config checks,
    rewards, reward range and the step pick them up."""
    import jax
    import jax.numpy as jnp

    from crystaljax import properties
    from crystaljax.env.registry import tasks
    from crystaljax.oracles import registry

    def mass_per_site(tokens, template_id, params):
        masses = jnp.concatenate([params.element_masses, jnp.zeros((1,), jnp.float32)])
        n = params.templates.num_sites[template_id]
        return masses[tokens].sum() / n, jnp.zeros((), jnp.int32)

    prop = properties.Property("mass_per_site", "amu", 40.0, -1.0, 100.0, False,
                               lambda v, t, beta, xp: xp.exp(-((t - v) / t) ** 2 / beta), 1.0,
                               ("test-mass",))
    properties.register(prop)
    registry.register(registry.OracleSpec("test-mass", True, None,
                                          lambda p, o, templates, vocab: mass_per_site))
    try:
        assert "mass-per-site-perovskite-small-v0" in tasks()
        env, params = crystaljax.make("mass-per-site-perovskite-small-v0", target=30.0)
        assert env.reward_range(params) == (0.0, 1.0) and not env.oracle_can_fail
        _, state = env.reset(jax.random.PRNGKey(0), params)
        for _ in range(env.max_sites):
            _, state, reward, done, _, info = env.step_env(state, 0, params)  # all Li
        li = float(params.element_masses[0])
        assert float(info["property"]) == pytest.approx(li, rel=1e-5)
        assert float(reward) == pytest.approx(np.exp(-((30.0 - li) / 30.0) ** 2), rel=1e-5)
        with pytest.raises(ConfigError, match="no in-graph oracle for 'mass_per_site'"):
            crystaljax.make("mass-per-site-perovskite-small-v0", oracle="analytic")
    finally:
        properties.PROPERTIES.pop("mass_per_site")
        registry.ORACLES.pop("test-mass")
    assert "mass-per-site-perovskite-small-v0" not in tasks()


def test_chunk_env_steps_rounds_down_to_whole_iterations_and_overrides_chunk_iterations():
    settings = TrainSettings(chunk_iterations=7, chunk_env_steps=2_500)
    assert settings.iterations_per_chunk(16) == 156  # DQN: 16 envs, one step each
    assert settings.iterations_per_chunk(2_400) == 1  # PPO: one rollout
    assert settings.iterations_per_chunk(4_096) == 1  # at least one
    assert TrainSettings(chunk_iterations=7).iterations_per_chunk(16) == 7
    with pytest.raises(ConfigError, match="chunk_env_steps must be >= 1"):
        TrainSettings(chunk_env_steps=0)
