"""Agent defaults = the settings that met the density criterion; `crystalgym` = the paper's."""

import os

import pytest

from crystaljax.agents import AGENTS, PRESETS, agent_config, default_config, list_presets
from crystaljax.agents.presets import CRYSTALGYM_NETWORK, split_preset
from crystaljax.benchmarks.results import SETTINGS, load_settings, split_settings
from crystaljax.config import ConfigError, to_dict
from crystaljax.training import load_run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DENSITY_CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, "configs"))
                         if f.startswith("density_"))


@pytest.mark.parametrize("config", sorted(f for f in os.listdir(os.path.join(ROOT, "configs"))
                                           if f.endswith(".yaml") and f != "benchmark_agents.yaml"))
def test_every_shipped_config_loads(config):
    """Every run config in configs/ loads (benchmark_agents.yaml is a settings file)."""
    run = load_run_config(os.path.join(ROOT, "configs", config))
    assert run.agent.total_env_steps > 0


def test_benchmarks_run_the_package_defaults():
    """The benchmark settings file adds nothing to the defaults but each agent's run length,
    which is also the agent's default: a benchmark row is a run of the defaults."""
    settings = load_settings(SETTINGS)
    assert sorted(settings) == sorted(AGENTS)
    for name, own in settings.items():
        steps, overrides = split_settings(own)
        assert overrides == {}, name
        assert steps == default_config(name).total_env_steps, name
    assert default_config("dqn").total_env_steps == 20_000
    assert default_config("ppo").total_env_steps == 50_000


@pytest.mark.parametrize("config", DENSITY_CONFIGS)
def test_shipped_density_configs_use_the_defaults(config):
    for name in AGENTS:
        run = load_run_config(os.path.join(ROOT, "configs", config), [f"agent={name}"])
        assert run.agent == default_config(name), (config, name)


def test_default_network_is_the_benchmark_network():
    net = default_config("sac").network
    assert (net.encoder_hidden, net.block_hidden, net.conv_hidden) == ((32, 32), (32, 32),
                                                                      (32, 32, 32))
    assert (net.num_blocks, net.activation, net.action_head) == (2, "relu", "pairwise")
    assert net.element_features and net.composition_readout


def test_crystalgym_preset_is_the_papers_settings():
    dqn = default_config("dqn", "crystalgym")
    assert (dqn.num_envs, dqn.buffer_size, dqn.batch_size, dqn.train_frequency) == (1, 2000, 64, 4)
    assert (dqn.tau, dqn.target_update_interval, dqn.learning_rate_end) == (1.0, 500, None)
    assert (dqn.total_env_steps, dqn.exploration_fraction) == (100_000, 0.2)
    assert to_dict(dqn.network) == {**to_dict(default_config("dqn").network),
                                    **CRYSTALGYM_NETWORK}
    rainbow = default_config("rainbow", "crystalgym")
    assert (rainbow.dueling, rainbow.n_step, rainbow.double_q) == (True, 3, True)
    assert (rainbow.num_atoms, rainbow.prioritised, rainbow.noisy) == (1, False, False)
    ppo = default_config("ppo", "crystalgym")
    assert (ppo.num_envs, ppo.num_steps, ppo.num_minibatches) == (1, 32, 2)
    assert (ppo.learning_rate, ppo.ent_coef) == (2.5e-4, 0.01)
    sac = default_config("sac", "crystalgym")
    assert (sac.autotune, sac.alpha_init, sac.buffer_size, sac.num_envs) == (False, 0.2, 2000, 1)
    assert default_config("ppo", "default") == default_config("ppo")


def test_keys_next_to_a_preset_override_it_and_nested_network_keys_merge():
    cfg = agent_config("dqn", {"preset": "crystalgym", "network.num_blocks": 1,
                               "batch_size": 16})
    assert (cfg.batch_size, cfg.buffer_size) == (16, 2000)
    assert (cfg.network.num_blocks, cfg.network.activation) == (1, "softplus")
    # the caller's mapping is not changed
    given = {"preset": "crystalgym", "network": {"num_blocks": 1}}
    split_preset("dqn", given)
    assert given == {"preset": "crystalgym", "network": {"num_blocks": 1}}


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown preset 'crystalgm'.*'crystalgym', 'default'"):
        agent_config("dqn", {"preset": "crystalgm"})
    with pytest.raises(ConfigError, match="unknown preset"):
        agent_config("dqn", {"preset": 3})
    assert list_presets() == sorted(PRESETS)


def test_preset_from_the_command_line_and_kept_for_resume():
    path = os.path.join(ROOT, "configs", "density_perovskite.yaml")
    for override in ("preset=crystalgym", "agent.preset=crystalgym"):
        run = load_run_config(path, ["agent=ppo", override, "learning_rate=1e-3"])
        assert run.agent == agent_config("ppo", {"preset": "crystalgym", "learning_rate": 1e-3})
        assert run.sections["agent"]["preset"] == "crystalgym"
        assert load_run_config(run.to_dict()).agent == run.agent
    with pytest.raises(ConfigError, match="unknown preset"):
        load_run_config(path, ["preset=paper"])


def test_overrides_that_are_not_a_mapping_are_a_config_error():
    from crystaljax.agents import DQNConfig

    for bad in (DQNConfig(), "batch_size=3", [("batch_size", 3)]):
        with pytest.raises(ConfigError, match="ppo config: overrides must be a mapping"):
            agent_config("ppo", bad)


def test_run_directories_record_the_agent_config_in_full():
    """What config.yaml holds: the agent section spelt out (presets expanded), so a resumed
    run rebuilds the same agent even if the package defaults change later."""
    from crystaljax.config import field_names

    path = os.path.join(ROOT, "configs", "density_perovskite.yaml")
    run = load_run_config(path, ["agent=rainbow", "preset=crystalgym", "batch_size=16"])
    saved = run.resolved_dict()
    assert set(saved["agent"]) == {"name", *field_names(type(run.agent))}
    assert saved["agent"]["name"] == "rainbow" and saved["agent"]["batch_size"] == 16
    assert saved["agent"]["network"]["activation"] == "softplus"
    assert saved["env"] == run.sections["env"] and saved["train"] == run.sections["train"]
    assert load_run_config(saved).agent == run.agent


def test_a_second_seed_set_is_its_own_result_when_merged():
    from crystaljax.benchmarks.results import Results
    from crystaljax.training.sweep import SweepResult

    first = Results.load(os.path.join(ROOT, "benchmarks", "agents_defaults_ppo.json")).runs[0]
    other = SweepResult.from_json({**first.to_json(), "seed": 1})
    merged = Results([first])
    merged.add(other)
    assert len(merged.runs) == 2 and first.key + (1,) == other.key


def test_self_imitation_preset_is_the_mlip_benchmarks_settings():
    """The settings of the DQN and PPO rows of benchmarks/mlip_learning.json (3 of 3 seeds)."""
    from crystaljax.benchmarks.results import Results

    benchmarked = {run.agent: run.overrides for run in Results.load(
        os.path.join(ROOT, "benchmarks", "mlip_learning.json")).runs}
    for name in ("dqn", "ppo"):
        assert agent_config(name, {"preset": "self-imitation"}) == agent_config(
            name, benchmarked[name])
    dqn = default_config("dqn", "self-imitation")
    assert (dqn.sil_coef, dqn.sil_capacity, dqn.sil_batch_size) == (4.0, 25, 64)
    assert default_config("ppo", "self-imitation").sil_coef == 1.0
    with pytest.raises(ConfigError, match="no settings for agent 'sac'"):
        agent_config("sac", {"preset": "self-imitation"})


def test_chgnet_config_trains_the_benchmarked_agents():
    path = os.path.join(ROOT, "configs", "bulk_modulus_chgnet.yaml")
    for name in ("ppo", "dqn"):
        run = load_run_config(path, [f"agent={name}"])
        assert run.agent == agent_config(name, {"preset": "self-imitation",
                                                "total_env_steps": 30_000})
        assert run.env.oracle == "chgnet" and run.env.oracle_options["relax"] == "volume"
