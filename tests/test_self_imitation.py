"""Self-imitation for PPO (crystaljax.agents.self_imitation): Monte-Carlo returns, the
top-K buffer, the loss, and PPO with ``sil_coef`` on the probe env."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from crystaljax.agents.self_imitation import (
    lower_bound_loss,
    monte_carlo_returns,
    sil_add,
    sil_init,
    sil_loss,
    sil_sample,
    trace_init,
    trace_step,
)
from crystaljax.testing import OPTIMAL_RETURN
from crystaljax.testing.agents import train_probe


def test_monte_carlo_returns_restart_at_episode_ends_and_need_a_termination():
    # env 0: an episode of 2 steps ending at t=1 (terminated), then one still running
    # env 1: truncated at t=2, then a 1-step episode terminated at t=3
    reward = jnp.array([[0.0, 1.0], [2.0, 0.5], [0.0, 0.25], [3.0, 4.0]])
    terminated = jnp.array([[False, False], [True, False], [False, False], [False, True]])
    truncated = jnp.array([[False, False], [False, False], [False, True], [False, False]])
    returns, complete = monte_carlo_returns(reward, terminated, truncated, gamma=0.5)
    np.testing.assert_allclose(returns[:, 0], [1.0, 2.0, 1.5, 3.0])
    np.testing.assert_allclose(returns[:, 1], [1.0 + 0.25 + 0.0625, 0.5 + 0.125, 0.25, 4.0])
    np.testing.assert_array_equal(complete[:, 0], [True, True, False, False])
    np.testing.assert_array_equal(complete[:, 1], [False, False, False, True])


def _obs(values):
    return {"x": jnp.asarray(values, jnp.float32)[:, None]}


def test_buffer_keeps_the_highest_complete_returns():
    buffer = sil_init({"x": jnp.zeros(1)}, capacity=3)
    assert np.isneginf(np.asarray(buffer.ret)).all()
    buffer = sil_add(buffer, _obs([1, 2, 3, 4]), jnp.array([1, 2, 3, 4]),
                     jnp.array([-0.5, -0.1, 9.0, -0.3]), jnp.array([True, True, False, True]))
    # the 9.0 has no complete return: not kept; the three complete ones are
    np.testing.assert_allclose(np.sort(np.asarray(buffer.ret)), [-0.5, -0.3, -0.1], rtol=1e-6)
    buffer = sil_add(buffer, _obs([5, 6]), jnp.array([5, 6]), jnp.array([-0.2, -0.9]),
                     jnp.array([True, True]))
    kept = dict(zip(np.asarray(buffer.action).tolist(), np.asarray(buffer.ret).tolist()))
    np.testing.assert_allclose(sorted(kept.values()), [-0.3, -0.2, -0.1], rtol=1e-6)
    # every field of a kept transition stays together
    np.testing.assert_array_equal(np.asarray(buffer.obs["x"])[:, 0], np.asarray(buffer.action))


def test_samples_come_from_filled_slots_only():
    buffer = sil_init({"x": jnp.zeros(1)}, capacity=8)
    buffer = sil_add(buffer, _obs([7]), jnp.array([7]), jnp.array([1.0]), jnp.array([True]))
    batch = sil_sample(buffer, jax.random.PRNGKey(0), (4, 16))
    assert batch.action.shape == (4, 16)
    assert (np.asarray(batch.action) == 7).all()
    empty = sil_sample(sil_init({"x": jnp.zeros(1)}, 8), jax.random.PRNGKey(0), (5,))
    assert np.isneginf(np.asarray(empty.ret)).all()


def test_loss_imitates_only_returns_above_the_value():
    batch = sil_add(sil_init({"x": jnp.zeros(1)}, 2), _obs([0, 0]), jnp.array([1, 2]),
                    jnp.array([1.0, -1.0]), jnp.array([True, True]))
    logits = jnp.zeros((2, 3))
    value = jnp.zeros(2)
    grad_logits, grad_value = jax.grad(lambda lg, v: sil_loss(lg, v, batch, 0.5),
                                       argnums=(0, 1))(logits, value)
    row = int(np.flatnonzero(np.asarray(batch.action) == 1)[0])
    other = 1 - row
    # the transition with R = 1 > V = 0 raises its action's probability and the value;
    # the one with R = -1 < V contributes nothing
    assert grad_logits[row, 1] < 0 and (grad_logits[row, [0, 2]] > 0).all()
    assert grad_value[row] < 0
    assert np.allclose(grad_logits[other], 0.0) and grad_value[other] == 0.0
    expected = (np.log(3.0) * 1.0 + 0.5 * 0.5 * 1.0) / 2
    np.testing.assert_allclose(sil_loss(logits, value, batch, 0.5), expected, rtol=1e-6)
    empty = sil_init({"x": jnp.zeros(1)}, 2)
    assert float(sil_loss(logits, value, empty, 0.5)) == 0.0


def test_ppo_with_self_imitation_solves_the_probes_and_keeps_complete_returns():
    run = train_probe("ppo", overrides={"sil_coef": 1.0, "sil_capacity": 64})
    env, agent, state, metrics = run
    assert np.isfinite(metrics["sil_loss"]).all() and np.isfinite(metrics["loss"]).all()
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
        trace, (c_obs, c_action, c_ret, c_complete) = trace_step(
            trace, _obs(obs), jnp.array(action), jnp.array(reward), jnp.array(term),
            jnp.array(trunc), gamma)
        for o, a, r, ok in zip(np.asarray(c_obs["x"])[:, 0], np.asarray(c_action),
                               np.asarray(c_ret), np.asarray(c_complete)):
            if ok:
                kept[int(a)] = (int(o), float(r))
    # env 0's first episode: steps (10, a1) and (11, a3), return 2 * 0.5 and 2
    # env 1's second episode: (21, a4), (22, a6), (23, a8) with returns 1, 2, 4
    assert kept == {1: (10, 1.0), 3: (11, 2.0), 4: (21, 1.0), 6: (22, 2.0), 8: (23, 4.0)}
    # env 1's truncated first step (20, a2) and env 0's running episode are not kept
    np.testing.assert_array_equal(np.asarray(trace.length), [2, 0])


def test_lower_bound_loss_pushes_q_up_to_the_return_and_never_down():
    batch = sil_add(sil_init({"x": jnp.zeros(1)}, 2), _obs([0, 0]), jnp.array([1, 2]),
                    jnp.array([1.0, -1.0]), jnp.array([True, True]))
    q = jnp.zeros(2)
    grad = jax.grad(lambda q: lower_bound_loss(q, batch))(q)
    high = int(np.flatnonzero(np.asarray(batch.ret) == 1.0)[0])
    assert grad[high] < 0 and grad[1 - high] == 0.0
    np.testing.assert_allclose(lower_bound_loss(q, batch), 0.5)


def test_dqn_with_self_imitation_solves_the_probes():
    run = train_probe("dqn", overrides={"sil_coef": 1.0, "sil_capacity": 64})
    env, agent, state, metrics = run
    assert np.isfinite(metrics["loss"][:, -1]).all()
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
