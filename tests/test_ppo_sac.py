"""PPO and discrete SAC: probes with known values (vmapped over seeds), PPO's GAE and
minibatch alignment, SAC's temperature, the non-finite guards, and both agents through the
trainer and CLI.

The probe runs are trained once per session (``probe_run`` fixture in conftest.py);
the other tests reuse their agents, states and replay buffers. Networks are tiny.
"""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from crystaljax.agents import make_agent
from crystaljax.agents.ppo import PPOSamples, gae_advantages, shuffle_minibatches
from crystaljax.agents.sac import masked_policy, target_entropy, temperature_loss
from crystaljax.cli import main
from crystaljax.testing import OPTIMAL_RETURN
from crystaljax.testing.agents import GAMMA, PROBE_CONFIGS, TINY_NET
from crystaljax.training.config import load_run_config
from crystaljax.training.run import Trainer


def _check_two_seeds(run):
    agent, state, metrics = run.agent, run.state, run.metrics
    assert metrics["env_steps"].shape == (2, agent.config.num_iterations)
    assert int(metrics["env_steps"][0, -1]) == (agent.config.num_iterations
                                                * agent.config.env_steps_per_iteration)
    leaf = lambda s: jax.tree.leaves(s)[0]  # noqa: E731
    assert not np.allclose(leaf(jax.tree.map(lambda x: x[0], state.params)),
                           leaf(jax.tree.map(lambda x: x[1], state.params)))


def _assert_greedy_optimal(env, agent, params, label):
    result = agent.evaluate(params, jax.random.PRNGKey(1), 96)
    rewards, tids = np.asarray(result["rewards"]), np.asarray(result["template_ids"])
    for kind, optimal in OPTIMAL_RETURN.items():
        got = rewards[tids == env.kind_id(kind)]
        assert got.size > 0 and np.allclose(got, optimal), (label, kind, got)


def _probe_first_states(env):
    obs, probe_state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(5), 64))
    return obs, np.asarray(probe_state.template_id), np.asarray(probe_state.cue)


def test_ppo_solves_probes_vmapped_over_seeds(probe_run):
    run = probe_run("ppo")
    _check_two_seeds(run)
    env, agent, state, metrics = run
    assert int(state.updates[0]) == agent.config.num_iterations * 4 * 4
    assert np.isfinite(metrics["loss"]).all()
    obs, kinds, cue = _probe_first_states(env)
    one = kinds == env.kind_id("one_step")
    logits_all, values_all = map(np.asarray, jax.jit(jax.vmap(
        lambda p: agent.policy_value(p, obs)))(state.params))
    for seed in range(2):
        _assert_greedy_optimal(env, agent, jax.tree.map(lambda x, s=seed: x[s], state.params),
                               ("ppo", seed))
        logits, values = logits_all[seed], values_all[seed]
        probs = np.asarray(jax.nn.softmax(logits))
        assert (probs[one, cue[one]] > 0.9).all()
        # V*(s0) = 1 for one_step, gamma for two_step, gamma * 0.5 for masked
        np.testing.assert_allclose(values[one], 1.0, atol=0.2)
        np.testing.assert_allclose(values[kinds == env.kind_id("two_step")], GAMMA, atol=0.2)
        np.testing.assert_allclose(values[kinds == env.kind_id("masked")], GAMMA * 0.5,
                                   atol=0.2)
        # masked actions get no probability
        assert probs[~np.asarray(obs.action_mask)].max() == 0.0


def test_sac_solves_probes_vmapped_over_seeds(probe_run):
    run = probe_run("sac")
    _check_two_seeds(run)
    env, agent, state, metrics = run
    assert int(state.updates[0]) > 500
    learned = np.isfinite(metrics["loss"][0])
    assert learned.any() and np.isfinite(metrics["entropy"][0][learned]).all()
    obs, kinds, cue = _probe_first_states(env)
    one = kinds == env.kind_id("one_step")
    q_all, logits_all = map(np.asarray, jax.jit(jax.vmap(
        lambda p: (agent.q_values(p, obs), agent.logits(p, obs))))(state.params))
    for seed in range(2):
        _assert_greedy_optimal(env, agent, jax.tree.map(lambda x, s=seed: x[s], state.params),
                               ("sac", seed))
        q = q_all[seed]
        # one_step ends at once, so its soft Q is the reward itself: +1 / -1
        np.testing.assert_allclose(q[one, cue[one]], 1.0, atol=0.15)
        # the wrong action is rarely sampled once the policy has learnt: a looser fit
        np.testing.assert_allclose(q[one, 1 - cue[one]], -1.0, atol=0.3)
        np.testing.assert_array_equal(q[one].argmax(1), cue[one])
        probs = np.asarray(jax.nn.softmax(logits_all[seed]))
        assert probs[~np.asarray(obs.action_mask)].max() == 0.0


@pytest.fixture(scope="module")
def ppo_rollout(probe_run):
    """(agent, state of seed 0, a real rollout [T, N] of it on the probe env)."""
    run = probe_run("ppo")
    state = run.seed(0)
    _, rollout, _ = jax.jit(run.agent._rollout)(state.params, state.env_state, state.obs,
                                                jax.random.PRNGKey(3))
    return run.agent, state, rollout


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


def test_ppo_bootstrap_of_a_never_truncating_env_equals_the_final_observation_value(
        ppo_rollout, monkeypatch):
    # the probe env never truncates, so the rollout takes next_value from the next step's
    # value; where an episode went on that must equal V(final observation), which the
    # rollout of an env that may truncate computes at every step
    agent, state, rollout = ppo_rollout
    assert agent.env.can_truncate is False
    monkeypatch.setattr(agent.env, "can_truncate", True, raising=False)
    _, every_step, _ = jax.jit(agent._rollout)(state.params, state.env_state, state.obs,
                                               jax.random.PRNGKey(3))
    went_on = ~np.asarray(rollout.terminated | rollout.truncated)
    assert went_on.any() and (~went_on).any()
    np.testing.assert_array_equal(every_step.action, rollout.action)
    np.testing.assert_allclose(np.asarray(rollout.next_value)[went_on],
                               np.asarray(every_step.next_value)[went_on], atol=1e-5)
    # and the advantages, which mask terminated bootstraps, are the same
    np.testing.assert_allclose(agent.samples_from_rollout(rollout).advantage,
                               agent.samples_from_rollout(every_step).advantage, atol=1e-5)


def test_ppo_minibatches_keep_every_field_of_a_transition_together(ppo_rollout):
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
    agent, state, rollout = ppo_rollout
    samples = agent.samples_from_rollout(rollout)
    np.testing.assert_allclose(samples.target - samples.value, samples.advantage, atol=1e-5)
    assert float(jnp.abs(samples.advantage).max()) > 0  # episodes ended: real advantages
    M = agent.config.num_minibatches
    mbs = shuffle_minibatches(samples, jax.random.PRNGKey(4), M)

    @jax.jit
    def check(mb):
        logits, values = agent.policy_value(state.params, mb.obs)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), mb.action[:, None], 1)[:, 0]
        return log_prob, values, agent.loss(state.params, mb)[1]

    log_probs, values, aux = jax.lax.map(check, mbs)
    np.testing.assert_allclose(log_probs, mbs.log_prob, atol=1e-5)
    np.testing.assert_allclose(values, mbs.value, atol=1e-5)
    np.testing.assert_allclose(mbs.target - mbs.value, mbs.advantage, atol=1e-5)
    assert np.abs(np.asarray(aux["approx_kl"])).max() < 1e-6
    assert (np.asarray(aux["clip_fraction"]) == 0.0).all()


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
def test_sac_temperature_moves_toward_target_entropy(probe_run, fraction, direction):
    # target 0 nats: the policy's entropy is always above it -> alpha only decreases;
    # target log|A| (the maximum): entropy is always below it -> alpha only increases.
    # Updates on the replay buffer of the SAC probe run, from alpha 0.2.
    run = probe_run("sac")
    agent = make_agent("sac", run.env, None, {**PROBE_CONFIGS["sac"],
                                              "target_entropy_fraction": fraction})
    trained = run.seed(0)
    log_alpha = jnp.log(jnp.float32(0.2))
    state = trained.replace(log_alpha=log_alpha,
                            alpha_opt_state=agent.alpha_optimizer.init(log_alpha))

    @jax.jit
    def updates(state):
        def one(s, k):
            s, m = agent.update(s, k)
            return s, (jnp.exp(s.log_alpha), m["entropy"], m["skipped"])

        return jax.lax.scan(one, state, jax.random.split(jax.random.PRNGKey(0), 300))

    _, (alpha, entropy, skipped) = updates(state)
    alpha, entropy = np.asarray(alpha), np.asarray(entropy)
    assert not np.asarray(skipped).any()
    assert (direction * np.diff(alpha) >= 0).all()
    assert direction * (alpha[-1] - 0.2) > 0.05
    if fraction == 0.0:
        assert (entropy > 0).all()


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


@pytest.mark.parametrize("agent", ["ppo"])
def test_trainer_runs_resumes_and_evaluates(tmp_path, agent):
    """The Trainer with an agent whose iteration is a whole rollout (chunks of rollouts,
    resume, evaluate). The replay agents' path is test_training.py's (DQN); every agent's
    checkpoint round trip is in test_agent_base.py."""
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
        assert again.config.agent_name == agent
        assert again.iteration * again.agent.config.env_steps_per_iteration == 160
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, again.state), final)
    finally:
        again.close()
    assert main(["evaluate", str(run_dir), "--episodes", "8"]) == 0
    result = json.loads((run_dir / "evaluate.json").read_text())
    assert result["eval_episodes"] == 8 and result["env_steps"] == 160


def _params_changed(new, old) -> bool:
    return any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)))


def test_ppo_skips_a_non_finite_minibatch_step_and_counts_it(ppo_rollout):
    """A NaN advantage skips (and counts) the steps of the minibatches holding it, and the
    other steps keep the parameters finite; finite advantages skip nothing."""
    agent, state, rollout = ppo_rollout
    samples = agent.samples_from_rollout(rollout)
    learn = jax.jit(agent._learn)
    # a fresh optimiser: at the end of the probe run the annealed learning rate is 0
    state = state.replace(opt_state=agent.optimizer.init(state.params))
    poisoned = samples.replace(advantage=samples.advantage.at[0].set(jnp.nan))
    params, opt_state, metrics = learn(state.params, state.opt_state, poisoned,
                                       jax.random.PRNGKey(2))
    # each epoch puts the NaN sample in exactly one minibatch: one skipped step per epoch
    assert int(metrics["skipped_updates"]) == agent.config.update_epochs
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves((params, opt_state)))
    params, opt_state, metrics = learn(state.params, state.opt_state, samples,
                                       jax.random.PRNGKey(2))
    assert int(metrics["skipped_updates"]) == 0 and _params_changed(params, state.params)


def test_sac_skips_a_non_finite_update_and_counts_it(probe_run):
    """NaN rewards leave critics, actor, temperature and optimiser states untouched; a
    finite batch then updates them (buffer and parameters of the SAC probe run)."""
    run = probe_run("sac")
    agent, state = run.agent, run.seed(0)
    update = jax.jit(agent.update)
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
