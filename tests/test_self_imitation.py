"""Self-imitation (crystaljax.agents.self_imitation): episode traces, the buffer of best
episodes, the losses, and PPO and DQN with ``sil_coef`` on the probe env."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from crystaljax.agents.self_imitation import (
    lower_bound_loss,
    sil_add,
    sil_init,
    sil_key,
    sil_loss,
    sil_record,
    sil_record_rollout,
    sil_sample,
    trace_init,
    trace_step,
)
from crystaljax.testing import OPTIMAL_RETURN
from crystaljax.testing.agents import train_probe


def _obs(values):
    return {"x": jnp.asarray(values, jnp.float32)[:, None]}


def _add(buffer, obs, action, ret, complete):
    """sil_add with each transition scored by its own return."""
    ret = jnp.asarray(ret, jnp.float32)
    return sil_add(buffer, _obs(obs), jnp.asarray(action), ret, ret, jnp.asarray(complete))


def _episodes(final_rewards, length, gamma, capacity, num_steps=None):
    """Buffer and trace after one episode of ``length`` steps per env (a reward only at
    the last step), recorded step by step, or as rollouts of ``num_steps`` steps."""
    n = len(final_rewards)
    buffer, trace = sil_init({"x": jnp.zeros(1)}, capacity), trace_init({"x": jnp.zeros(1)}, n,
                                                                        length)
    steps = np.arange(length)
    obs = jnp.asarray(100 * np.arange(n)[None, :] + steps[:, None], jnp.float32)[..., None]
    action = jnp.broadcast_to(jnp.arange(length)[:, None], (length, n))
    reward = jnp.where(steps[:, None] == length - 1, jnp.asarray(final_rewards)[None, :], 0.0)
    terminated = jnp.broadcast_to(steps[:, None] == length - 1, (length, n))
    truncated = jnp.zeros((length, n), bool)
    if num_steps is None:
        for t in range(length):
            buffer, trace = sil_record(buffer, trace, {"x": obs[t]}, action[t], reward[t],
                                       terminated[t], truncated[t], gamma)
        return buffer, trace
    for start in range(0, length, num_steps):
        part = slice(start, start + num_steps)
        buffer, trace = sil_record_rollout(buffer, trace, {"x": obs[part]}, action[part],
                                           reward[part], terminated[part], truncated[part],
                                           gamma)
    return buffer, trace


def test_buffer_keeps_whole_best_episodes_not_the_highest_step_returns():
    # a reward only at the last step: an early step of the worse episode (-0.0015 * 0.99^4)
    # has a higher return than the last step of the best one (-0.00145); ranking by step
    # returns would split the best episode
    buffer, _ = _episodes([-0.00145, -0.0015], length=5, gamma=0.99, capacity=5)
    np.testing.assert_array_equal(np.sort(np.asarray(buffer.obs["x"])[:, 0]), [0, 1, 2, 3, 4])
    np.testing.assert_allclose(np.asarray(buffer.score), -0.00145, rtol=1e-6)
    rets = dict(zip(np.asarray(buffer.action).tolist(), np.asarray(buffer.ret).tolist()))
    np.testing.assert_allclose([rets[t] for t in range(5)],
                               [-0.00145 * 0.99 ** (4 - t) for t in range(5)], rtol=1e-5)


def test_an_episode_split_over_two_rollouts_is_kept_whole():
    whole, _ = _episodes([1.0, 0.5, 2.0], length=5, gamma=0.9, capacity=10)
    split, trace = _episodes([1.0, 0.5, 2.0], length=5, gamma=0.9, capacity=10, num_steps=3)
    for field in ("obs", "action", "ret", "score"):
        np.testing.assert_allclose(np.sort(np.ravel(jax.tree.leaves(getattr(split, field)))),
                                   np.sort(np.ravel(jax.tree.leaves(getattr(whole, field)))))
    np.testing.assert_array_equal(np.asarray(trace.length), [0, 0, 0])


def test_buffer_keeps_the_best_scored_complete_finite_transitions():
    buffer = sil_init({"x": jnp.zeros(1)}, capacity=3)
    assert np.isneginf(np.asarray(buffer.ret)).all()
    buffer = _add(buffer, [1, 2, 3, 4, 9], [1, 2, 3, 4, 9], [-0.5, -0.1, 9.0, -0.3, np.nan],
                  [True, True, False, True, True])
    # the 9.0 has no complete return and the NaN no finite one: not kept
    np.testing.assert_allclose(np.sort(np.asarray(buffer.ret)), [-0.5, -0.3, -0.1], rtol=1e-6)
    buffer = _add(buffer, [5, 6], [5, 6], [-0.2, -0.9], [True, True])
    kept = dict(zip(np.asarray(buffer.action).tolist(), np.asarray(buffer.ret).tolist()))
    np.testing.assert_allclose(sorted(kept.values()), [-0.3, -0.2, -0.1], rtol=1e-6)
    # every field of a kept transition stays together
    np.testing.assert_array_equal(np.asarray(buffer.obs["x"])[:, 0], np.asarray(buffer.action))


def test_samples_come_from_filled_slots_only():
    buffer = sil_init({"x": jnp.zeros(1)}, capacity=8)
    buffer = _add(buffer, [7], [7], [1.0], [True])
    batch = sil_sample(buffer, jax.random.PRNGKey(0), (4, 16))
    assert batch.action.shape == (4, 16)
    assert (np.asarray(batch.action) == 7).all()
    # several filled slots: each drawn about equally often
    buffer = _add(buffer, [1, 2, 3], [1, 2, 3], [0.5, 0.4, 0.3], [True, True, True])
    counts = np.bincount(np.asarray(sil_sample(buffer, jax.random.PRNGKey(1), (4000,)).action),
                         minlength=8)[[1, 2, 3, 7]]
    assert counts.sum() == 4000 and (np.abs(counts - 1000) < 150).all(), counts
    empty = sil_sample(sil_init({"x": jnp.zeros(1)}, 8), jax.random.PRNGKey(0), (5,))
    assert np.isneginf(np.asarray(empty.ret)).all()


def test_loss_imitates_only_returns_above_the_value():
    batch = _add(sil_init({"x": jnp.zeros(1)}, 2), [0, 0], [1, 2], [1.0, -1.0], [True, True])
    logits = jnp.zeros((2, 3))
    value = jnp.zeros(2)
    grad_logits, grad_value = jax.grad(lambda lg, v: sil_loss(lg, v, batch, 0.5),
                                       argnums=(0, 1))(logits, value)
    row = int(np.flatnonzero(np.asarray(batch.action) == 1)[0])
    other = 1 - row
    # the transition with R = 1 > V = 0 raises its action's probability and the value;
    # the one with R = -1 < V contributes nothing
    assert grad_logits[row, 1] < 0 and (grad_logits[row, [0, 2]] > 0).all()
    # only the value term moves V (the policy term's advantage is not differentiated):
    # d/dV of value_coef * 0.5 * (R - V)^2 / count = -0.5 * 1 / 2
    np.testing.assert_allclose(grad_value[row], -0.25, rtol=1e-6)
    assert np.allclose(grad_logits[other], 0.0) and grad_value[other] == 0.0
    expected = (np.log(3.0) * 1.0 + 0.5 * 0.5 * 1.0) / 2
    np.testing.assert_allclose(sil_loss(logits, value, batch, 0.5), expected, rtol=1e-6)
    empty = sil_init({"x": jnp.zeros(1)}, 2)
    assert float(sil_loss(logits, value, empty, 0.5)) == 0.0


def test_ppo_with_self_imitation_solves_the_probes_and_keeps_complete_returns():
    run = train_probe("ppo", overrides={"sil_coef": 1.0, "sil_capacity": 64})
    env, agent, state, metrics = run
    assert np.isfinite(metrics["sil_loss"]).all() and np.isfinite(metrics["loss"]).all()
    assert metrics["skipped_updates"].sum() == 0
    rets = np.asarray(state.sil.ret)  # [seeds, K]
    assert np.isfinite(rets).all()  # the buffer filled up
    # the probe env's returns lie in [0, 1]: rewards 0 or 1, discounted
    assert (rets >= 0).all() and (rets <= 1.0 + 1e-6).all()
    for seed in range(2):
        params = jax.tree.map(lambda x, s=seed: x[s], state.params)
        result = agent.evaluate(params, jax.random.PRNGKey(1), 96)
        rewards, kinds = np.asarray(result["rewards"]), np.asarray(result["template_ids"])
        for kind, optimal in OPTIMAL_RETURN.items():
            got = rewards[kinds == env.kind_id(kind)]
            assert got.size > 0 and np.allclose(got, optimal), (seed, kind, got)


def test_ppo_without_self_imitation_has_no_buffer_and_a_nan_metric(probe_run):
    run = probe_run("ppo")
    assert run.state.sil is None
    assert np.isnan(run.metrics["sil_loss"]).all()


def test_episode_traces_give_the_returns_of_terminated_episodes_only():
    # two envs, episodes of at most 3 steps; env 0 terminates after 2 steps, env 1 is
    # truncated after 1 step and then terminates after 3
    trace = trace_init({"x": jnp.zeros(1)}, num_envs=2, max_length=3)
    gamma = 0.5
    script = [  # (obs, action, reward, terminated, truncated) per env
        ([10, 20], [1, 2], [0.0, 0.0], [False, False], [False, True]),
        ([11, 21], [3, 4], [2.0, 0.0], [True, False], [False, False]),
        ([12, 22], [5, 6], [0.0, 0.0], [False, False], [False, False]),
        ([13, 23], [7, 8], [0.0, 4.0], [False, True], [False, False]),
    ]
    kept = {}
    for obs, action, reward, term, trunc in script:
        trace, (c_obs, c_action, c_ret, c_score, c_complete) = trace_step(
            trace, _obs(obs), jnp.array(action), jnp.array(reward), jnp.array(term),
            jnp.array(trunc), gamma)
        for o, a, r, sc, ok in zip(np.asarray(c_obs["x"])[:, 0], np.asarray(c_action),
                                   np.asarray(c_ret), np.asarray(c_score),
                                   np.asarray(c_complete)):
            if ok:
                kept[int(a)] = (int(o), float(r), float(sc))
    # env 0's first episode: steps (10, a1) and (11, a3), return 2 * 0.5 and 2
    # env 1's second episode: (21, a4), (22, a6), (23, a8) with returns 1, 2, 4
    # (each step scored by its episode's undiscounted reward: 2 and 4)
    assert kept == {1: (10, 1.0, 2.0), 3: (11, 2.0, 2.0), 4: (21, 1.0, 4.0),
                    6: (22, 2.0, 4.0), 8: (23, 4.0, 4.0)}
    # env 1's truncated first step (20, a2) and env 0's running episode are not kept
    np.testing.assert_array_equal(np.asarray(trace.length), [2, 0])


def test_lower_bound_loss_pushes_q_up_to_the_return_and_never_down():
    batch = _add(sil_init({"x": jnp.zeros(1)}, 2), [0, 0], [1, 2], [1.0, -1.0], [True, True])
    q = jnp.zeros(2)
    grad = jax.grad(lambda q: lower_bound_loss(q, batch))(q)
    high = int(np.flatnonzero(np.asarray(batch.ret) == 1.0)[0])
    assert grad[high] < 0 and grad[1 - high] == 0.0
    np.testing.assert_allclose(lower_bound_loss(q, batch), 0.5)


def test_dqn_with_self_imitation_solves_the_probes():
    run = train_probe("dqn", overrides={"sil_coef": 1.0, "sil_capacity": 64})
    env, agent, state, metrics = run
    assert np.isfinite(metrics["loss"][:, -1]).all()
    assert metrics["skipped_updates"].sum() == 0
    rets = np.asarray(state.sil.ret)
    assert np.isfinite(rets).all() and (rets >= 0).all() and (rets <= 1.0 + 1e-6).all()
    for seed in range(2):
        params = jax.tree.map(lambda x, s=seed: x[s], state.params)
        result = agent.evaluate(params, jax.random.PRNGKey(1), 96)
        rewards, kinds = np.asarray(result["rewards"]), np.asarray(result["template_ids"])
        for kind, optimal in OPTIMAL_RETURN.items():
            got = rewards[kinds == env.kind_id(kind)]
            assert got.size > 0 and np.allclose(got, optimal), (seed, kind, got)


def test_self_imitation_needs_scalar_q():
    import pytest

    from crystaljax.agents import make_agent
    from crystaljax.config import ConfigError
    from crystaljax.testing import ProbeEnv

    with pytest.raises(ConfigError, match="scalar Q"):
        make_agent("rainbow", ProbeEnv(), None, {"sil_coef": 1.0})


def test_an_episode_longer_than_the_trace_is_never_kept():
    buffer, trace = sil_init({"x": jnp.zeros(1)}, 4), trace_init({"x": jnp.zeros(1)}, 1, 2)
    for t, (reward, done) in enumerate([(0.0, False), (0.0, False), (5.0, True)]):
        buffer, trace = sil_record(buffer, trace, _obs([t]), jnp.array([t]),
                                   jnp.array([reward]), jnp.array([done]), jnp.array([False]),
                                   0.9)
    assert np.isneginf(np.asarray(buffer.score)).all()
    np.testing.assert_array_equal(np.asarray(trace.length), [0])  # the next episode starts


def test_self_imitation_draws_have_a_key_of_their_own():
    key = jax.random.PRNGKey(3)
    own = np.asarray(jax.random.key_data(sil_key(key)))
    for k in [key, *jax.random.split(key, 2), *jax.random.split(key, 4)]:
        assert not np.array_equal(own, np.asarray(jax.random.key_data(k)))


def _sil_sample_of(state, seed=0, size=8):
    sil = jax.tree.map(lambda x: x[seed], state.sil)
    return sil_sample(sil, jax.random.PRNGKey(5), (size,))


def test_ppo_loss_adds_exactly_sil_coef_times_the_self_imitation_loss():
    from crystaljax.agents.ppo import PPOSamples

    env, agent, state, metrics = train_probe("ppo", num_seeds=1, overrides={
        "sil_coef": 2.0, "sil_capacity": 16})
    assert metrics["skipped_updates"].sum() == 0
    sil_batch = _sil_sample_of(state)
    assert np.isfinite(np.asarray(sil_batch.ret)).all()
    # untrained parameters: V is far from the kept returns, so the term is not 0
    params = agent.network.init(jax.random.PRNGKey(9), sil_batch.obs)
    zeros = jnp.zeros(sil_batch.action.shape)
    batch = PPOSamples(obs=sil_batch.obs, action=sil_batch.action, log_prob=zeros,
                       value=zeros, advantage=zeros, target=zeros)
    with_sil, _ = agent.loss(params, batch, sil_batch)
    without, _ = agent.loss(params, batch)
    logits, value = agent.policy_value(params, sil_batch.obs)
    expected = 2.0 * sil_loss(logits, value, sil_batch, agent.config.sil_value_coef)
    assert abs(float(expected)) > 1e-3
    np.testing.assert_allclose(with_sil - without, expected, rtol=1e-4, atol=1e-7)


def test_dqn_loss_adds_exactly_sil_coef_times_the_lower_bound():
    from crystaljax.agents.buffer import NStepBatch

    env, agent, state, metrics = train_probe("dqn", num_seeds=1, overrides={
        "sil_coef": 2.0, "sil_capacity": 16})
    assert metrics["skipped_updates"].sum() == 0
    sil_batch = _sil_sample_of(state)
    # untrained parameters: Q is far below the kept returns, so the bound is active
    shifted = agent.network.init(jax.random.PRNGKey(9), sil_batch.obs, deterministic=True)
    batch = NStepBatch(obs=sil_batch.obs, action=sil_batch.action,
                       reward=jnp.zeros(sil_batch.action.shape),
                       discount=jnp.zeros(sil_batch.action.shape), next_obs=sil_batch.obs)
    weights = jnp.ones(sil_batch.action.shape)
    key = jax.random.PRNGKey(0)
    (with_sil, _), _ = agent._loss_and_priorities(shifted, shifted, batch, weights, key,
                                                  sil_batch)
    (without, _), _ = agent._loss_and_priorities(shifted, shifted, batch, weights, key)
    q = agent.q_output(shifted, sil_batch.obs).q_values
    q_taken = jnp.take_along_axis(q, sil_batch.action[:, None], axis=1)[:, 0]
    expected = 2.0 * lower_bound_loss(q_taken, sil_batch)
    assert float(expected) > 1e-3
    np.testing.assert_allclose(with_sil - without, expected, rtol=1e-4, atol=1e-7)
