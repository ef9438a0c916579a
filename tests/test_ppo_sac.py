"""PPO and discrete SAC: probes with known values (vmapped over seeds), PPO's GAE and
minibatch alignment, SAC's temperature, and both agents through the trainer and CLI.

Networks are tiny; each agent is compiled once per test to keep the suite fast.
"""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from crystaljax.agents import make_agent, make_train
from crystaljax.agents.ppo import PPOSamples, gae_advantages, shuffle_minibatches
from crystaljax.agents.probes import OPTIMAL_RETURN, ProbeEnv
from crystaljax.agents.sac import masked_policy, target_entropy, temperature_loss
from crystaljax.cli import main
from crystaljax.training.config import load_run_config
from crystaljax.training.run import Trainer

TINY_NET = {"node_embed_dim": 8, "focus_embed_dim": 4, "encoder_hidden": (16, 16),
            "num_blocks": 1, "block_hidden": (16, 16), "conv_hidden": (16, 16),
            "head_hidden": (16,), "set2set_iterations": 1}
GAMMA = 0.9
PPO_PROBE = {"total_env_steps": 16 * 8 * 40, "num_envs": 16, "num_steps": 8,
             "num_minibatches": 4, "learning_rate": 3e-3, "gamma": GAMMA, "network": TINY_NET,
             # the benchmark's entropy weight: with near-uniform initial policy heads and the
             # default 0.01, one seed's actor collapses onto a cue-blind action
             "ent_coef": 0.03}
SAC_PROBE = {"total_env_steps": 1200, "num_envs": 8, "learning_starts": 64, "train_frequency": 2,
             "buffer_size": 512, "batch_size": 32, "q_learning_rate": 3e-3,
             "policy_learning_rate": 3e-3, "alpha_learning_rate": 3e-3, "gamma": GAMMA,
             "tau": 0.05, "target_update_interval": 8, "network": TINY_NET}


def _train_two_seeds(name, config):
    env = ProbeEnv()
    agent = make_agent(name, env, None, config)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    state, metrics = jax.jit(jax.vmap(make_train(name, env, None, config)))(keys)
    assert metrics["env_steps"].shape == (2, agent.config.num_iterations)
    assert int(metrics["env_steps"][0, -1]) == (agent.config.num_iterations
                                                * agent.config.env_steps_per_iteration)
    leaf = lambda s: jax.tree.leaves(s)[0]  # noqa: E731
    assert not np.allclose(leaf(jax.tree.map(lambda x: x[0], state.params)),
                           leaf(jax.tree.map(lambda x: x[1], state.params)))
    return env, agent, state, metrics


def _assert_greedy_optimal(env, agent, params, label):
    result = agent.evaluate(params, jax.random.PRNGKey(1), 96)
    rewards, tids = np.asarray(result["rewards"]), np.asarray(result["template_ids"])
    for kind, optimal in OPTIMAL_RETURN.items():
        got = rewards[tids == env.kind_id(kind)]
        assert got.size > 0 and np.allclose(got, optimal), (label, kind, got)


def _probe_first_states(env):
    obs, probe_state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(5), 64))
    return obs, np.asarray(probe_state.template_id), np.asarray(probe_state.cue)


def test_ppo_solves_probes_vmapped_over_seeds():
    env, agent, state, metrics = _train_two_seeds("ppo", PPO_PROBE)
    assert int(state.updates[0]) == agent.config.num_iterations * 4 * 4
    assert np.isfinite(metrics["loss"]).all()
    obs, kinds, cue = _probe_first_states(env)
    one = kinds == env.kind_id("one_step")
    for seed in range(2):
        params = jax.tree.map(lambda x: x[seed], state.params)
        _assert_greedy_optimal(env, agent, params, ("ppo", seed))
        logits, values = map(np.asarray, agent.policy_value(params, obs))
        probs = np.asarray(jax.nn.softmax(logits))
        assert (probs[one, cue[one]] > 0.9).all()
        # V*(s0) = 1 for one_step, gamma for two_step, gamma * 0.5 for masked
        np.testing.assert_allclose(values[one], 1.0, atol=0.2)
        np.testing.assert_allclose(values[kinds == env.kind_id("two_step")], GAMMA, atol=0.2)
        np.testing.assert_allclose(values[kinds == env.kind_id("masked")], GAMMA * 0.5,
                                   atol=0.2)
        # masked actions get no probability
        assert probs[~np.asarray(obs.action_mask)].max() == 0.0


def test_sac_solves_probes_vmapped_over_seeds():
    env, agent, state, metrics = _train_two_seeds("sac", SAC_PROBE)
    assert int(state.updates[0]) > 500
    learned = np.isfinite(metrics["loss"][0])
    assert learned.any() and np.isfinite(metrics["entropy"][0][learned]).all()
    obs, kinds, cue = _probe_first_states(env)
    one = kinds == env.kind_id("one_step")
    for seed in range(2):
        params = jax.tree.map(lambda x: x[seed], state.params)
        _assert_greedy_optimal(env, agent, params, ("sac", seed))
        q = np.asarray(agent.q_values(params, obs))
        # one_step ends at once, so its soft Q is the reward itself: +1 / -1
        np.testing.assert_allclose(q[one, cue[one]], 1.0, atol=0.15)
        # the wrong action is rarely sampled once the policy has learnt: a looser fit
        np.testing.assert_allclose(q[one, 1 - cue[one]], -1.0, atol=0.3)
        np.testing.assert_array_equal(q[one].argmax(1), cue[one])
        probs = np.asarray(jax.nn.softmax(agent.logits(params, obs)))
        assert probs[~np.asarray(obs.action_mask)].max() == 0.0


def test_gae_bootstraps_truncation_but_not_termination():
    g, lam = 0.5, 0.5
    # one env, 4 steps: [running, terminated, running, truncated]
    reward = jnp.asarray([[1.0], [2.0], [0.0], [4.0]])
    value = jnp.asarray([[0.5], [1.0], [0.25], [2.0]])
    next_value = jnp.asarray([[1.0], [9.0], [2.0], [8.0]])  # 9 must be ignored (terminal)
    terminated = jnp.asarray([[False], [True], [False], [False]])
    truncated = jnp.asarray([[False], [False], [False], [True]])
    adv, ret = gae_advantages(reward, value, next_value, terminated, truncated, g, lam)
    d3 = 4.0 + g * 8.0 - 2.0  # truncation: bootstrap from the final observation's value
    d2 = 0.0 + g * 2.0 - 0.25
    d1 = 2.0 - 1.0  # termination: no bootstrap
    d0 = 1.0 + g * 1.0 - 0.5
    expected = [d0 + g * lam * d1, d1, d2 + g * lam * d3, d3]  # recursion cut at both ends
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(ret, adv + value, rtol=1e-6)


def test_ppo_minibatches_keep_every_field_of_a_transition_together(perovskite_env):
    # by construction: every field encodes the index of its transition
    B = 24
    index = jnp.arange(B)
    samples = PPOSamples(obs={"tokens": jnp.stack([index, -index], axis=1)}, action=index,
                         log_prob=-index.astype(jnp.float32),
                         value=index.astype(jnp.float32) / 2,
                         advantage=index.astype(jnp.float32) * 3,
                         target=index.astype(jnp.float32) * 3.5)
    mbs = shuffle_minibatches(samples, jax.random.PRNGKey(0), 4)
    assert mbs.action.shape == (4, 6)
    rows = np.asarray(mbs.action)
    assert sorted(rows.ravel().tolist()) == list(range(B))
    assert not np.array_equal(rows.ravel(), np.arange(B))  # really shuffled
    np.testing.assert_array_equal(mbs.obs["tokens"][..., 0], rows)
    np.testing.assert_array_equal(mbs.obs["tokens"][..., 1], -rows)
    np.testing.assert_array_equal(mbs.log_prob, -rows)
    np.testing.assert_array_equal(mbs.value, rows / 2)
    np.testing.assert_array_equal(mbs.advantage, rows * 3)
    np.testing.assert_array_equal(mbs.target, rows * 3.5)

    # on a real rollout: with the rollout's own parameters every minibatch row must give
    # back its stored log-prob and value (ratio 1, zero KL), which fails if observations
    # and actions/log-probs/advantages are shuffled apart
    env, params = perovskite_env
    agent = make_agent("ppo", env, params, {"num_envs": 6, "num_steps": 7, "num_minibatches": 3,
                                            "network": TINY_NET})
    state = agent.init(jax.random.PRNGKey(2))
    _, rollout, _ = agent._rollout(state.params, state.env_state, state.obs, state.best,
                                   jax.random.PRNGKey(3))
    samples = agent.samples_from_rollout(rollout)
    np.testing.assert_allclose(samples.target - samples.value, samples.advantage, atol=1e-5)
    assert float(jnp.abs(samples.advantage).max()) > 0  # episodes ended: real advantages
    mbs = shuffle_minibatches(samples, jax.random.PRNGKey(4), 3)
    for i in range(3):
        mb = jax.tree.map(lambda x, i=i: x[i], mbs)
        logits, values = agent.policy_value(state.params, mb.obs)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), mb.action[:, None], 1)[:, 0]
        np.testing.assert_allclose(log_prob, mb.log_prob, atol=1e-5)
        np.testing.assert_allclose(values, mb.value, atol=1e-5)
        np.testing.assert_allclose(mb.target - mb.value, mb.advantage, atol=1e-5)
        _, aux = agent.loss(state.params, mb)
        assert abs(float(aux["approx_kl"])) < 1e-6 and float(aux["clip_fraction"]) == 0.0


def test_temperature_loss_gradient_and_target_entropy():
    mask = jnp.asarray([[True, False, True, True], [True, False, False, False]])
    np.testing.assert_allclose(target_entropy(mask, 0.5), [0.5 * np.log(3), 0.0], rtol=1e-6)
    probs, log_probs, entropy = masked_policy(jnp.where(mask, 0.0, -1e9), mask)
    np.testing.assert_allclose(entropy, [np.log(3), 0.0], rtol=1e-6)
    assert np.isfinite(log_probs).all() and float(probs[0, 1]) == 0.0
    grad = jax.grad(temperature_loss)
    # entropy above target -> positive gradient -> descent lowers alpha, and vice versa
    assert float(grad(jnp.float32(0.0), jnp.asarray([1.0]), jnp.asarray([0.2]))) > 0
    assert float(grad(jnp.float32(0.0), jnp.asarray([0.1]), jnp.asarray([0.2]))) < 0


@pytest.mark.parametrize("fraction, direction", [(0.0, -1), (1.0, +1)])
def test_sac_temperature_moves_toward_target_entropy(fraction, direction):
    # target 0 nats: the policy's entropy is always above it -> alpha only decreases;
    # target log|A| (the maximum): entropy is always below it -> alpha only increases
    config = dict(SAC_PROBE, total_env_steps=480, target_entropy_fraction=fraction)
    env = ProbeEnv()
    agent = make_agent("sac", env, None, config)
    state = agent.init(jax.random.PRNGKey(0))
    state, metrics = agent.train_chunk(state, agent.config.num_iterations)
    alpha = np.asarray(metrics["alpha"])
    entropy = np.asarray(metrics["entropy"])
    updated = np.isfinite(entropy)
    assert updated.sum() > 50
    steps = np.diff(alpha)
    assert (direction * steps >= 0).all()
    assert direction * (alpha[-1] - 0.2) > 0.05
    if fraction == 0.0:
        assert (entropy[updated] > 0).all()


def _tiny_run_config(tmp_path, agent):
    cfg = {
        "env": {"task": "density-perovskite-small-v0", "num_rbf": 4},
        "agent": {"name": "dqn", "network": {k: list(v) if isinstance(v, tuple) else v
                                             for k, v in TINY_NET.items()}, **{
            "ppo": {"total_env_steps": 160, "num_envs": 4, "num_steps": 10,
                    "num_minibatches": 2},
            "sac": {"total_env_steps": 160, "num_envs": 4, "learning_starts": 40,
                    "batch_size": 8, "buffer_size": 200},
        }[agent]},
        "train": {"chunk_iterations": {"ppo": 2, "sac": 20}[agent], "eval_episodes": 8,
                  "eval_every_chunks": 2, "runs_dir": str(tmp_path / "runs"),
                  "name": f"tiny-{agent}", "top_k": 3},
    }
    path = tmp_path / f"tiny-{agent}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("agent", ["ppo", "sac"])
def test_trainer_runs_resumes_and_evaluates(tmp_path, agent):
    config = load_run_config(_tiny_run_config(tmp_path, agent), {"agent": agent, "seed": 1})
    run_dir = tmp_path / "runs" / f"tiny-{agent}"
    trainer = Trainer(config, str(run_dir))
    trainer.run(progress=False)
    final = jax.tree.map(np.asarray, trainer.state)
    trainer.close()
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # 160 env steps = 4 PPO rollouts of 40 / 40 SAC iterations
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert int(last["env_steps"]) == 160 and float(last["eval_mean_reward"]) > 0
    assert np.isfinite(float(last["loss"]))
    top = json.loads((run_dir / "crystals" / "top_crystals.json").read_text())
    assert 1 <= len(top) <= 3

    again = Trainer(load_run_config(str(run_dir / "config.yaml")), str(run_dir), resume=True)
    try:
        assert again.config.agent["name"] == agent
        assert again.iteration * again.agent.config.env_steps_per_iteration == 160
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, again.state), final)
    finally:
        again.close()
    assert main(["evaluate", str(run_dir), "--episodes", "8"]) == 0
    result = json.loads((run_dir / "evaluate.json").read_text())
    assert result["eval_episodes"] == 8 and result["env_steps"] == 160


def _params_changed(new, old) -> bool:
    return any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)))


def test_ppo_skips_a_non_finite_minibatch_step_and_counts_it():
    """A NaN advantage skips (and counts) the steps of the minibatches holding it, and the
    other steps keep the parameters finite; finite advantages skip nothing."""
    agent = make_agent("ppo", ProbeEnv(), None, PPO_PROBE)
    state = agent.init(jax.random.PRNGKey(0))
    _, rollout, _ = agent._rollout(state.params, state.env_state, state.obs, state.best,
                                   jax.random.PRNGKey(1))
    samples = agent.samples_from_rollout(rollout)
    learn = jax.jit(agent._learn)
    poisoned = samples.replace(advantage=samples.advantage.at[0].set(jnp.nan))
    params, opt_state, metrics = learn(state.params, state.opt_state, poisoned,
                                       jax.random.PRNGKey(2))
    # each epoch puts the NaN sample in exactly one minibatch: one skipped step per epoch
    assert int(metrics["skipped_updates"]) == agent.config.update_epochs
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves((params, opt_state)))
    params, opt_state, metrics = learn(state.params, state.opt_state, samples,
                                       jax.random.PRNGKey(2))
    assert int(metrics["skipped_updates"]) == 0 and _params_changed(params, state.params)


def test_sac_skips_a_non_finite_update_and_counts_it():
    """NaN rewards leave critics, actor, temperature and optimiser states untouched; a
    finite batch then updates them."""
    agent = make_agent("sac", ProbeEnv(), None, {**SAC_PROBE, "learning_starts": 10_000})
    state, metrics = jax.jit(lambda s: agent.run_iterations(s, 20))(
        agent.init(jax.random.PRNGKey(0)))
    assert int(metrics["skipped_updates"].sum()) == 0  # no update before learning_starts
    update = jax.jit(agent._update)
    data = state.buffer.data
    poisoned = state.replace(buffer=state.buffer.replace(
        data=data.replace(reward=jnp.full_like(data.reward, jnp.nan))))
    new, metrics = update(poisoned, jax.random.PRNGKey(1))
    assert bool(metrics["skipped"]) and not np.isfinite(float(metrics["loss"]))
    for name in ("params", "actor_opt_state", "critic_opt_state", "alpha_opt_state",
                 "log_alpha"):
        chex.assert_trees_all_equal(getattr(new, name), getattr(state, name))
    new, metrics = update(state, jax.random.PRNGKey(1))
    assert not bool(metrics["skipped"]) and np.isfinite(float(metrics["loss"]))
    assert _params_changed(new.params, state.params)
    assert float(new.log_alpha) != float(state.log_alpha)
