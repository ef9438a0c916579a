"""Value-based agents: probes with known values, replay/n-step bookkeeping, jit traces,
vmap over seeds, checkpoints, config overrides, evaluation on the crystal env.

The probe runs are trained once per session (``probe_run`` fixture in conftest.py) and
shared with the other agent tests; networks are tiny.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import rlax

from crystaljax.agents import default_config, make_agent
from crystaljax.agents.buffer import (
    Transition,
    buffer_add,
    buffer_init,
    gather_nstep,
    sample_indices,
    update_priorities,
)
from crystaljax.agents.losses import categorical_losses
from crystaljax.config import ConfigError
from crystaljax.testing import OPTIMAL_RETURN, ProbeEnv
from crystaljax.testing.agents import GAMMA, PROBE_CONFIGS, TINY_NET


@pytest.mark.parametrize("name", ["dqn", "rainbow"])
def test_solves_probes_with_known_values_vmapped_over_seeds(name, probe_run):
    env, agent, state, metrics = probe_run(name)
    num_iterations = PROBE_CONFIGS[name]["total_env_steps"] // PROBE_CONFIGS[name]["num_envs"]
    assert metrics["env_steps"].shape == (2, num_iterations)
    assert int(state.updates[0]) == int(state.updates[1]) > 500  # a few hundred updates
    leaf = lambda s: jax.tree.leaves(s.params)[0]  # noqa: E731
    assert not np.allclose(leaf(jax.tree.map(lambda x: x[0], state)),
                           leaf(jax.tree.map(lambda x: x[1], state)))

    obs, probe_state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(5), 64))
    kinds = np.asarray(probe_state.template_id)
    cue = np.asarray(probe_state.cue)
    q_all = np.asarray(jax.jit(jax.vmap(lambda p: agent.q_output(p, obs).q_values))(state.params))
    for seed in range(2):
        params = jax.tree.map(lambda x, seed=seed: x[seed], state.params)
        result = agent.evaluate(params, jax.random.PRNGKey(1), 96)
        rewards, tids = np.asarray(result["rewards"]), np.asarray(result["template_ids"])
        for kind, optimal in OPTIMAL_RETURN.items():
            got = rewards[tids == env.kind_id(kind)]
            assert got.size > 0 and np.allclose(got, optimal), (name, seed, kind, got)
        q = q_all[seed]
        best = q.max(axis=1)
        one = kinds == env.kind_id("one_step")
        np.testing.assert_allclose(best[one], 1.0, atol=0.1)
        np.testing.assert_array_equal(q[one].argmax(1), cue[one])
        np.testing.assert_allclose(best[kinds == env.kind_id("two_step")], GAMMA, atol=0.1)
        # bootstrapping must ignore the masked action (else gamma * 1.0 = 0.9)
        np.testing.assert_allclose(best[kinds == env.kind_id("masked")], GAMMA * 0.5, atol=0.1)


@pytest.mark.xdist_group("probe-rainbow")
def test_update_with_non_finite_loss_is_skipped_not_applied(probe_run):
    """A batch with NaN rewards leaves parameters, optimiser state and priorities as they
    were and is counted; a finite batch then updates as usual (the replay buffer and
    parameters are those at the end of the rainbow probe run)."""
    run = probe_run("rainbow")
    agent, state = run.agent, run.seed(0)
    update = jax.jit(agent.update)
    data = state.buffer.data
    poisoned = state.replace(buffer=state.buffer.replace(
        data=data.replace(reward=jnp.full_like(data.reward, jnp.nan))))
    new, metrics = update(poisoned, jax.random.PRNGKey(1), jnp.int32(400))
    assert bool(metrics["skipped"]) and not np.isfinite(float(metrics["loss"]))
    chex.assert_trees_all_equal(new.params, state.params)
    chex.assert_trees_all_equal(new.opt_state, state.opt_state)
    np.testing.assert_array_equal(new.buffer.priorities, state.buffer.priorities)
    new, metrics = update(state, jax.random.PRNGKey(1), jnp.int32(400))
    assert not bool(metrics["skipped"]) and np.isfinite(float(metrics["loss"]))
    assert not np.allclose(jax.tree.leaves(new.params)[0], jax.tree.leaves(state.params)[0])


def _transition(obs_value, reward, terminated=False, truncated=False):
    obs = jnp.full((2,), obs_value, jnp.float32)
    return Transition(obs=obs, action=jnp.int32(0), reward=jnp.float32(reward),
                      terminated=jnp.bool_(terminated), truncated=jnp.bool_(truncated),
                      next_obs=obs + 0.5)


def _fill(steps, capacity):
    """A one-env buffer holding ``steps`` [(obs_value, reward, terminated, truncated)]."""
    buffer = buffer_init(_transition(0.0, 0.0), capacity, 1)
    for step in steps:
        buffer = buffer_add(buffer, jax.tree.map(lambda x: x[None], _transition(*step)))
    return buffer


def test_nstep_returns_stop_at_episode_ends():
    g = 0.5
    steps = [(0, 1.0), (1, 2.0, True), (2, 4.0), (3, 8.0, False, True), (4, 16.0), (5, 32.0),
             (6, 64.0)]
    buffer = _fill(steps, capacity=8)
    rows = jnp.asarray([0, 1, 2, 3, 4])
    batch = gather_nstep(buffer, rows, jnp.zeros(5, jnp.int32), 3, g)
    # row 0: r0 + g r1, terminated at row 1 -> no bootstrap; row 2 stops at the truncation
    np.testing.assert_allclose(batch.reward, [1 + g * 2, 2, 4 + g * 8, 8, 16 + g * 32 + g * g * 64])
    np.testing.assert_allclose(batch.discount, [0.0, 0.0, g ** 2, g, g ** 3])
    # a truncation bootstraps from its final observation (obs 3 + 0.5)
    np.testing.assert_allclose(batch.next_obs[:, 0], [1.5, 1.5, 3.5, 3.5, 6.5])
    np.testing.assert_allclose(batch.obs[:, 0], [0, 1, 2, 3, 4])


def test_sampling_respects_window_wraparound_and_priorities():
    steps = [(float(i), float(i)) for i in range(7)]  # wraps a 4-row buffer: rows hold 4,5,6,3
    buffer = _fill(steps, capacity=4)
    rows, envs, probs = sample_indices(buffer, jax.random.PRNGKey(0), 2000, n_step=2)
    starts = np.asarray(buffer.data.obs[rows, envs, 0])
    assert set(starts.tolist()) == {3.0, 4.0, 5.0}  # 6 is the newest: no full 2-step window
    np.testing.assert_allclose(probs, 1 / 3)
    batch = gather_nstep(buffer, rows, envs, 2, 1.0)
    np.testing.assert_allclose(np.asarray(batch.reward), starts + starts + 1)

    buffer = update_priorities(buffer, jnp.asarray([3, 0]), jnp.asarray([0, 0]),
                               jnp.asarray([1e-8, 9.0]))  # obs 3 -> ~0, obs 4 -> 9
    assert float(buffer.max_priority) == 9.0
    rows, envs, probs = sample_indices(buffer, jax.random.PRNGKey(1), 4000, n_step=2,
                                       priority_exponent=1.0)
    starts = np.asarray(buffer.data.obs[rows, envs, 0])
    assert (starts != 3.0).all()
    assert abs(np.mean(starts == 4.0) - 0.9) < 0.03  # priorities 9 : 1 (obs 5 kept max 1)


def test_c51_priorities_are_the_kl_divergence_not_the_cross_entropy():
    """The loss is rlax's C51 double-Q cross-entropy; the priority (KL) is 0 for a learned
    target that lies between two atoms, where the cross-entropy stays at its entropy."""
    atoms = jnp.linspace(0.0, 1.0, 11)
    logits_t = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 11))
    selector = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.2]])
    r, discount = jnp.array([0.95, 0.0, 0.3]), jnp.array([0.0, 0.9, 0.5])  # 0.95: two atoms
    logits_tm1 = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 11))
    a = jnp.array([0, 1, 1])
    ce, kl = categorical_losses(atoms, logits_tm1, a, r, discount, logits_t, selector)
    reference = jax.vmap(rlax.categorical_double_q_learning,
                         in_axes=(None, 0, 0, 0, 0, None, 0, 0))(
        atoms, logits_tm1, a, r, discount, atoms, logits_t, selector)
    np.testing.assert_allclose(ce, reference, rtol=1e-5)
    assert (kl > 0).all() and (kl < ce).all()
    learned = jnp.log(jnp.zeros(11).at[9].set(0.5).at[10].set(0.5) + 1e-30)
    ce, kl = categorical_losses(atoms, logits_tm1.at[0, 0].set(learned), a, r, discount,
                                logits_t, selector)
    np.testing.assert_allclose([ce[0], kl[0]], [np.log(2.0), 0.0], atol=1e-5)


def test_train_chunk_traces_once_metrics_and_checkpoint_roundtrip(perovskite_env, tmp_path):
    env, params = perovskite_env
    config = {"num_envs": 4, "learning_starts": 8, "train_frequency": 2, "buffer_size": 64,
              "batch_size": 8, "total_env_steps": 400, "network": TINY_NET}
    agent = make_agent("dqn", env, params, config)
    chunk = jax.jit(chex.assert_max_traces(agent.run_iterations, n=1), static_argnums=1)
    state = agent.init(jax.random.PRNGKey(3))
    state, m1 = chunk(state, 6)
    state, m2 = chunk(state, 6)
    chex.clear_trace_counter()
    assert int(state.iteration) == 12 and int(state.env_steps) == 48
    np.testing.assert_array_equal(np.concatenate([m1["env_steps"], m2["env_steps"]]),
                                  4 * np.arange(1, 13))
    episodes = np.concatenate([m1["episodes_done"], m2["episodes_done"]])
    np.testing.assert_array_equal(episodes, [4 if (i + 1) % 5 == 0 else 0 for i in range(12)])
    assert int(state.updates) == 2 * (12 - 1)  # updates from env step 8 (iteration 2) on
    rewards = np.concatenate([m1["terminal_reward_sum"], m2["terminal_reward_sum"]])
    assert (rewards[episodes == 0] == 0).all() and (rewards[episodes > 0] > 0).all()
    best = agent.best_crystal(state)
    assert float(m2["best_reward"][-1]) == float(best.reward) <= 1.0
    assert (np.asarray(best.tokens) < env.num_actions).all()  # a finished crystal
    assert np.isfinite(m2["loss"]).all() and (m2["epsilon"] < 1.0).all()
    assert (m2["oracle_failures"] == 0).all() and (m2["invalid_actions"] == 0).all()

    path = tmp_path / "ckpt"
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, state)
        ckpt.wait_until_finished()
        restored = ckpt.restore(path, agent.init(jax.random.PRNGKey(99)))
    chex.assert_trees_all_equal(restored, state)
    resumed, _ = chunk(restored, 6)
    continued, _ = chunk(state, 6)
    chex.assert_trees_all_equal(resumed.params, continued.params)

    result = agent.evaluate(state, jax.random.PRNGKey(4), 16)
    assert result["tokens"].shape == (16, env.max_sites)
    assert (np.asarray(result["tokens"]) < env.num_actions).all()  # finished crystals
    props = np.asarray(result["properties"])
    np.testing.assert_allclose(result["abs_errors"], np.abs(props - 3.0), rtol=1e-6)
    np.testing.assert_allclose(result["rewards"], np.exp(-(props - 3.0) ** 2 / 3.0), rtol=1e-5)
    actions = agent.greedy_action(agent.network_params(state), state.obs)
    assert actions.shape == (4,) and actions.dtype == jnp.int32


def test_config_overrides_and_errors(perovskite_env):
    env, params = perovskite_env
    agent = make_agent("rainbow", env, params, {"num_envs": 4, "network.head_hidden": [8],
                                                 "network": {"num_blocks": 2}})
    cfg = agent.config
    assert cfg.num_envs == 4 and cfg.network.head_hidden == (8,) and cfg.network.num_blocks == 2
    assert (cfg.num_atoms, cfg.n_step, cfg.dueling, cfg.noisy, cfg.prioritised) == (51, 1, True,
                                                                                      True, True)
    dqn = default_config("dqn")
    assert (dqn.learning_rate, dqn.buffer_size, dqn.batch_size, dqn.gamma) == (2.5e-4, 20_000,
                                                                               128, 0.99)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['learning_rat'\]; allowed: .*learning_rate"):
        make_agent("dqn", env, params, {"learning_rat": 1e-3})
    with pytest.raises(ConfigError, match=r"network: unknown key\(s\) \['widths'\]; allowed"):
        make_agent("dqn", env, params, {"network": {"widths": 3}})
    with pytest.raises(ConfigError, match="unknown agent 'ppo2'"):
        make_agent("ppo2", env, params)
    with pytest.raises(ConfigError, match="divide"):
        make_agent("dqn", env, params, {"num_envs": 6, "train_frequency": 4})


class _WideRewardProbe(ProbeEnv):
    def reward_range(self, params=None):
        return -2.0, 3.0


def test_c51_support_is_the_reward_range_the_env_declares(perovskite_env):
    """The support comes from ``env.reward_range(params)`` for every env (CrystalEnv leaves
    the failure penalty out when the oracle cannot fail), unless v_min/v_max are given."""
    env, params = perovskite_env
    assert not env.oracle_can_fail and env.reward_range(params) == (0.0, 1.0)
    for env_, params_, support in [(env, params, (0.0, 1.0)), (ProbeEnv(), None, (-1.0, 1.0)),
                                   (_WideRewardProbe(), None, (-2.0, 3.0))]:
        agent = make_agent("rainbow", env_, params_, {"network": TINY_NET})
        assert (agent.network.v_min, agent.network.v_max) == support
        np.testing.assert_allclose(np.asarray(agent.network.atoms)[[0, -1]], support)
    agent = make_agent("rainbow", env, params, {"v_min": -0.5, "v_max": 2.0})
    assert (agent.network.v_min, agent.network.v_max) == (-0.5, 2.0)
