"""What every agent shares: the metrics schema, action masks, the episode-statistics
wrapper, the best crystal of training and checked configs (all four agents, on the probe
runs trained once per session)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crystaljax.agents import AGENTS, METRICS, apply_overrides, default_config, make_agent
from crystaljax.agents.base import INT_METRICS
from crystaljax.agents.exploration import epsilon_greedy, random_valid_action
from crystaljax.config import ConfigError
from crystaljax.testing import ProbeEnv
from crystaljax.wrappers.episode_stats import VecEpisodeStats

NAMES = sorted(AGENTS)
#: float metrics each agent reports (the others must be nan at every iteration)
REPORTED = {
    "dqn": {"loss", "epsilon"},
    "rainbow": {"loss", "epsilon"},
    "ppo": {"loss", "entropy", "policy_loss", "value_loss", "approx_kl", "clip_fraction"},
    "sac": {"loss", "alpha", "entropy", "actor_loss", "alpha_loss", "q_mean"},
}


@pytest.mark.parametrize("name", NAMES)
def test_every_agent_reports_every_metric_of_the_schema(probe_run, name):
    run = probe_run(name)
    m = run.metrics
    assert set(m) == set(METRICS) and set(METRICS.values()) <= {"sum", "last", "mean"}
    T = run.agent.config.num_iterations
    for key, values in m.items():
        assert values.shape == (2, T), key
        assert values.dtype == (np.int32 if key in INT_METRICS else np.float32), key
    for key in set(METRICS) - INT_METRICS - REPORTED[name] - {"terminal_reward_sum",
                                                                "best_reward", "best_property"}:
        assert np.isnan(m[key]).all(), (name, key)
    for key in REPORTED[name]:
        assert np.isfinite(m[key][:, -1]).all(), (name, key)
    assert (np.diff(m["env_steps"], axis=1) == run.agent.config.env_steps_per_iteration).all()
    assert (np.diff(m["updates"], axis=1) >= 0).all()
    assert (m["oracle_failures"] == 0).all() and (m["skipped_updates"] == 0).all()
    # the wrapper's running totals agree with the per-iteration counts
    stats = run.state.env_state.stats
    np.testing.assert_array_equal(stats.episodes, m["episodes_done"].sum(axis=1))
    np.testing.assert_array_equal(stats.invalid_actions, m["invalid_actions"].sum(axis=1))
    best = run.agent.best_crystal(run.state)
    np.testing.assert_array_equal(best.reward, m["best_reward"][:, -1])
    assert (np.asarray(best.reward) == 1.0).all()  # the best probe return
    assert (np.asarray(best.tokens) < run.env.num_actions).any(axis=1).all()


@pytest.mark.parametrize("name", NAMES)
def test_acting_and_greedy_actions_respect_action_masks(probe_run, name):
    """Training on the probe env (whose ``masked`` kind forbids action 0, which the env
    flags in info['invalid_action']) never takes a forbidden action, and the greedy
    action is valid under random masks, for trained and untrained parameters."""
    run = probe_run(name)
    assert run.metrics["episodes_done"].sum() > 100
    assert (run.metrics["invalid_actions"] == 0).all()
    obs, _ = jax.vmap(run.env.reset)(jax.random.split(jax.random.PRNGKey(7), 64))
    mask = jax.random.bernoulli(jax.random.PRNGKey(8), 0.4, obs.action_mask.shape)
    mask = mask.at[jnp.arange(64), jax.random.randint(jax.random.PRNGKey(9), (64,), 0, 4)].set(
        True)
    obs = obs.replace(action_mask=mask)
    fresh = run.agent.network_params(run.agent.init(jax.random.PRNGKey(3)))
    trained = run.agent.network_params(run.seed(0))
    for params in (fresh, trained):
        actions = np.asarray(jax.jit(run.agent.greedy_action)(params, obs))
        assert np.asarray(mask)[np.arange(64), actions].all(), name


@pytest.mark.parametrize("name", NAMES)
def test_every_agent_state_survives_a_checkpoint_round_trip(probe_run, name, tmp_path):
    """The Trainer's checkpointer restores each agent's trained state exactly (what
    ``crystaljax train --resume`` relies on; the Trainer itself is agent-agnostic and runs
    end to end in test_training.py and, for PPO's rollout iterations, test_ppo_sac.py)."""
    from crystaljax.training.checkpoints import Checkpointer

    run = probe_run(name)
    state = run.seed(1)
    checkpointer = Checkpointer(str(tmp_path))
    try:
        checkpointer.save(7, state)
        assert checkpointer.latest() == 7
        restored = checkpointer.restore(run.agent.init(jax.random.PRNGKey(99)))
    finally:
        checkpointer.close()
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, restored),
                 jax.tree.map(np.asarray, state))
    best = run.agent.best_crystal(restored)
    assert float(best.reward) == float(run.agent.best_crystal(state).reward) > -np.inf


def test_the_probe_env_flags_forbidden_actions():
    """So that the zero count of invalid actions above means something."""
    env = ProbeEnv(("masked",))
    _, state = env.reset(jax.random.PRNGKey(0))
    _, state, *_ = env.step_env(state, jnp.int32(1))
    *_, reward, terminated, _, info = env.step_env(state, jnp.int32(0))
    assert bool(info["invalid_action"]) and bool(terminated) and float(reward) == -1.0
    assert env.reward_range(None) == (-1.0, 1.0)


def test_random_and_epsilon_greedy_actions_are_valid():
    key = jax.random.PRNGKey(0)
    mask = jax.random.bernoulli(key, 0.3, (512, 6)).at[:, 5].set(True)
    q = jnp.where(mask, jax.random.normal(key, (512, 6)), -1e9)
    for actions in (random_valid_action(key, mask), epsilon_greedy(key, q, mask, 0.5)):
        assert np.asarray(mask)[np.arange(512), np.asarray(actions)].all()


def test_episode_stats_wrapper_counts_episodes_returns_and_the_best_crystal():
    env = ProbeEnv()
    envs = VecEpisodeStats(env, 5)
    obs, state = envs.reset(jax.random.PRNGKey(0), None)
    step = jax.jit(lambda k, s, a: envs.step(k, s, a, None))
    totals = {"episodes_done": 0, "invalid_actions": 0}
    best, returns = -np.inf, []
    for i in range(40):
        k_act, k_env = jax.random.split(jax.random.PRNGKey(i + 1))
        actions = jax.random.randint(k_act, (5,), 0, env.num_actions)  # masks ignored
        obs, state, reward, terminated, truncated, info, stats = step(k_env, state, actions)
        done = np.asarray(terminated | truncated)
        assert int(stats["episodes_done"]) == done.sum()
        np.testing.assert_allclose(float(stats["terminal_reward_sum"]),
                                   np.asarray(reward)[done].sum(), rtol=1e-6)
        assert int(stats["invalid_actions"]) == np.asarray(info["invalid_action"]).sum()
        for key in totals:
            totals[key] += int(stats[key])
        returns += np.asarray(reward)[done].tolist()
        best = max([best, *np.asarray(reward)[done]])
    assert state.stats.episodes == totals["episodes_done"] == len(returns) > 20
    assert state.stats.invalid_actions == totals["invalid_actions"] > 0
    assert float(state.stats.best.reward) == best and int(state.stats.oracle_failures) == 0
    assert (np.asarray(state.stats.episode_return) == 0).all()  # rewards only at the end


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("overrides, key", [
    ({"learning_rate": -1}, "learning_rate"), ({"lr": 1}, "lr"), ({"gamma": 1.5}, "gamma"),
    ({"num_envs": 0}, "num_envs"), ({"num_envs": 2.5}, "num_envs"),
    ({"total_env_steps": "many"}, "total_env_steps"), ({"adam_eps": float("nan")}, "adam_eps"),
    ({"max_grad_norm": -1.0}, "max_grad_norm"), ({"network.num_blocks": 0}, "num_blocks"),
    ({"network": {"head_hidden": [0]}}, "head_hidden"), ({"network": {"widths": 3}}, "widths"),
])
def test_invalid_agent_configs_raise_config_error_naming_the_key(name, overrides, key):
    env = ProbeEnv()
    if name == "sac" and key == "learning_rate":
        overrides = {"q_learning_rate": -1}  # SAC has three learning rates
    with pytest.raises(ConfigError, match=key) as info:
        make_agent(name, env, None, overrides)
    assert "\n" not in str(info.value)
    if key in ("lr", "widths"):
        assert "allowed:" in str(info.value)


@pytest.mark.parametrize("name, overrides", [
    ("dqn", {"tau": 0.0}), ("dqn", {"tau": 1.5}), ("dqn", {"batch_size": 0}),
    ("dqn", {"buffer_size": 2, "num_envs": 2, "n_step": 3}), ("dqn", {"loss": "l1"}),
    ("dqn", {"epsilon_end": 2.0}), ("rainbow", {"v_min": 1.0}),
    ("rainbow", {"v_min": 1.0, "v_max": 0.0}), ("dqn", {"learning_starts": -1}),
    ("ppo", {"clip_coef": 0.0}), ("ppo", {"gae_lambda": -0.1}), ("ppo", {"num_minibatches": 3}),
    ("ppo", {"ent_coef": -0.01}), ("sac", {"alpha_init": 0.0}),
    ("sac", {"target_entropy_fraction": 1.5}), ("sac", {"train_frequency": 3, "num_envs": 2}),
])
def test_out_of_range_values_are_rejected_at_construction(name, overrides):
    with pytest.raises(ConfigError):
        make_agent(name, ProbeEnv(), None, overrides)
    config_cls = AGENTS[name][0]
    with pytest.raises(ConfigError):  # direct construction is checked too
        config_cls(**{k: v for k, v in overrides.items()})


def test_overrides_convert_and_keep_defaults():
    cfg = apply_overrides(default_config("ppo"), {"num_envs": "4", "learning_rate": "1e-3",
                                                  "network.head_hidden": [8]})
    assert cfg.num_envs == 4 and cfg.learning_rate == 1e-3 and cfg.network.head_hidden == (8,)
    assert cfg.num_steps == default_config("ppo").num_steps


def test_all_finite_looks_at_every_leaf_of_every_tree():
    from crystaljax.agents.guards import all_finite

    grads = {"a": jnp.ones((3, 2)), "b": {"c": jnp.zeros(4), "n": jnp.arange(3)}}
    assert bool(all_finite(jnp.float32(1.0), grads))
    for bad in (jnp.nan, jnp.inf, -jnp.inf):
        broken = {"a": grads["a"], "b": {"c": grads["b"]["c"].at[2].set(bad), "n": grads["b"]["n"]}}
        assert not bool(all_finite(jnp.float32(1.0), broken))
        assert not bool(jax.jit(all_finite)(jnp.float32(bad), grads))
    assert bool(all_finite())
