"""The host-oracle bridge: one batched pure_callback per step, only finished envs evaluated."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import crystaljax
from crystaljax.oracles.base import OracleResult, Status


class PymatgenDensityOracle:
    """A host-side test oracle: pymatgen's density, failing on crystals containing H."""

    property_name = "density"
    unit = "g/cm3"

    def __init__(self):
        self.calls = []

    def evaluate(self, structures):
        self.calls.append(len(structures))
        out = []
        for s in structures:
            if "H" in {e.symbol for e in s.composition}:
                out.append(OracleResult.failure(Status.SCF_NOT_CONVERGED, "H is not allowed here"))
            else:
                out.append(OracleResult(float(s.density)))
        return out


class BrokenOracle(PymatgenDensityOracle):
    def evaluate(self, structures):
        raise RuntimeError("boom")


def run_batch(env, params, key, n_envs, n_steps, actions_fn):
    v_reset = jax.vmap(env.reset, in_axes=(0, None))
    v_step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    _, state = v_reset(jax.random.split(key, n_envs), params)
    outs = []
    for t in range(n_steps):
        out = v_step(jax.random.split(jax.random.fold_in(key, t), n_envs), state,
                     actions_fn(t), params)
        state = out[1]
        outs.append(out)
    return outs


def test_one_host_call_per_step_with_only_finished_envs(key):
    oracle = PymatgenDensityOracle()
    env, params = crystaljax.make("density-cubic-mini-small-v0", oracle=oracle)
    n = 32
    rng = np.random.default_rng(0)
    outs = run_batch(env, params, key, n, 6, lambda t: jnp.asarray(rng.integers(0, 18, n)))
    finished = [int(o[3].sum()) for o in outs]
    assert oracle.calls == [f for f in finished if f > 0]  # one call per step, batch of finished
    assert sum(finished) > 0
    for _, _, reward, term, _, info in outs:
        term = np.asarray(term)
        status = np.asarray(info["status"])
        assert (status[~term] == Status.NOT_EVALUATED).all()
        for i in np.flatnonzero(term):
            s = env.to_structure(info["final_state"], index=int(i))
            if "H" in {e.symbol for e in s.composition}:
                assert status[i] == Status.SCF_NOT_CONVERGED and float(reward[i]) == -1.0
            else:
                assert status[i] == Status.OK
                assert float(info["property"][i]) == pytest.approx(float(s.density), rel=1e-5)
                assert float(reward[i]) == pytest.approx(np.exp(-(3 - s.density) ** 2 / 3), rel=1e-4)
    counts = env.host_bridge.status_counts
    assert counts["OK"] + counts["SCF_NOT_CONVERGED"] == sum(finished)
    assert len(env.host_bridge.records) == env.host_bridge.total_records == sum(finished)


def test_host_oracle_inside_scan_matches_in_graph_oracle(key):
    host_env, params = crystaljax.make("density-perovskite-small-v0", oracle=PymatgenDensityOracle())
    ref_env, ref_params = crystaljax.make("density-perovskite-small-v0")
    no_h = jnp.asarray([i for i, s in enumerate(host_env.vocab) if s != "H"])

    def make_run(env):
        def run(key):
            _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, 16), params)

            def body(state, k):
                a = no_h[jax.random.randint(k, (16,), 0, len(no_h))]
                _, state, r, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                    jax.random.split(k, 16), state, a, params)
                return state, r
            return jax.lax.scan(body, state, jax.random.split(key, 10))[1]
        return jax.jit(run)

    np.testing.assert_allclose(make_run(host_env)(key), make_run(ref_env)(key), rtol=1e-5)


def test_oracle_exception_becomes_penalty_not_crash(key):
    env, params = crystaljax.make("density-perovskite-small-v0", oracle=BrokenOracle())
    outs = run_batch(env, params, key, 4, 5, lambda t: jnp.full((4,), 2))
    _, _, reward, term, _, info = outs[-1]
    assert bool(term.all())
    assert (np.asarray(info["status"]) == Status.ORACLE_ERROR).all()
    np.testing.assert_allclose(reward, -1.0)
    assert "boom" in env.host_bridge.records[-1].reason


def test_oracle_property_mismatch_is_rejected():
    oracle = PymatgenDensityOracle()
    oracle.property_name = "band_gap"
    with pytest.raises(crystaljax.ConfigError, match="computes 'band_gap'"):
        crystaljax.make("density-perovskite-small-v0", oracle=oracle)


class ClosableOracle(PymatgenDensityOracle):
    """Declares that it cannot fail and counts its cache use, as a real host oracle would."""

    can_fail = False

    def __init__(self):
        super().__init__()
        self.closed = 0

    def stats(self):
        return {"computed": sum(self.calls), "cache_hits": 0}

    def close(self):
        self.closed += 1


def test_records_carry_tokens_template_and_the_steps_reward(key):
    env, params = crystaljax.make("density-cubic-mini-small-v0", oracle=PymatgenDensityOracle())
    outs = run_batch(env, params, key, 8, 6, lambda t: jnp.full((8,), 2 + t % 3))
    stepped = sorted(float(r) for _, _, reward, term, _, _ in outs
                     for r in np.asarray(reward)[np.asarray(term)])
    records, seen = env.oracle_records(0)
    assert seen == len(records) == len(stepped) > 0
    np.testing.assert_allclose(sorted(rec.reward for rec in records), stepped, rtol=1e-6)
    for rec in records:
        template = env.templates[rec.template_id]
        assert rec.template == template.name and len(rec.tokens) == template.num_sites
        assert tuple(env.vocab[k] for k in rec.tokens) == rec.symbols
    assert env.oracle_records(seen) == ([], seen)
    stats = env.oracle_stats()
    assert stats["evaluations"] == stats["computed"] == len(records) and stats["cache_hits"] == 0


def test_oracle_declares_whether_it_can_fail_and_env_close_closes_it(key):
    oracle = ClosableOracle()
    env, params = crystaljax.make("density-perovskite-small-v0", oracle=oracle)
    with env:
        assert env.oracle_can_fail is False
        assert env.reward_range(params) == (0.0, 1.0)  # no penalty in the range
    assert oracle.closed == 1
    env.close()
    assert oracle.closed == 1  # idempotent
    failing, params = crystaljax.make("density-perovskite-small-v0", oracle=PymatgenDensityOracle())
    assert failing.oracle_can_fail and failing.reward_range(params) == (-1.0, 1.0)
