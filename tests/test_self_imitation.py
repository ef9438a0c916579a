"""Self-imitation for PPO (crystaljax.agents.self_imitation): Monte-Carlo returns, the
top-K buffer, the loss, and PPO with ``sil_coef`` on the probe env."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from crystaljax.agents.self_imitation import (
    monte_carlo_returns,
    sil_add,
    sil_init,
    sil_loss,
    sil_sample,
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
    grad_logits, grad_value = jax.grad(lambda l, v: sil_loss(l, v, batch, 0.5),
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
