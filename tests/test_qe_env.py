"""An env episode whose reward comes from real pw.x through the jitted, vmapped step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from qe_helpers import requires_pw

import crystaljax
from crystaljax.oracles.base import Status
from crystaljax.oracles.executors import DaskExecutor, LocalPoolExecutor
from crystaljax.oracles.qe.oracle import QEOracle
from crystaljax.oracles.qe.runner import RunnerConfig

PAIRS = [("Na", "Cl"), ("K", "Cl"), ("Li", "Cl"), ("Na", "Cl")]  # the last repeats the first


def _episode(oracle, key):
    env, params = crystaljax.make("band-gap-perovskite-small-v0", template="rocksalt",
                                  oracle=oracle)
    n = len(PAIRS)
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    _, state = reset(jax.random.split(key, n), params)
    # Rock salt: either site may be filled first; both orders give the same crystal
    # (a translation by half a body diagonal), so the element order does not matter.
    idx = [[env.vocab.index(a), env.vocab.index(b)] for a, b in PAIRS]
    outs = []
    for t in range(2):
        out = step(jax.random.split(jax.random.fold_in(key, t), n), state,
                   jnp.asarray([i[t] for i in idx]), params)
        state = out[1]
        outs.append(out)
    return env, outs


@requires_pw
@pytest.mark.parametrize("executor_kind", ["local", "dask"])
def test_reward_from_real_pw_through_vmapped_step(executor_kind, tmp_path, key):
    executor = (LocalPoolExecutor(2) if executor_kind == "local"
                else DaskExecutor(n_workers=2, processes=False))
    with executor:
        oracle = QEOracle("band_gap", preset="test", executor=executor,
                          cache=tmp_path / "cache.sqlite", pseudo_dir=tmp_path / "pp",
                          runner=RunnerConfig(time_limit=120.0,
                                              scratch_root=str(tmp_path / "scratch")))
        env, outs = _episode(oracle, key)
    assert not np.asarray(outs[0][3]).any()
    _, _, reward, terminated, _, info = outs[1]
    assert np.asarray(terminated).all()
    status = np.asarray(info["status"])
    gaps = np.asarray(info["property"])
    assert (status == Status.OK).all()
    assert (gaps > 3.0).all()  # alkali chlorides: wide gaps
    assert gaps[3] == pytest.approx(gaps[0])  # same crystal, same value (computed once)
    np.testing.assert_allclose(np.asarray(reward), np.exp(-(1.12 - gaps) ** 2 / 1.0), rtol=1e-5)
    assert oracle.cache.stats.misses == 3  # three distinct crystals ran pw.x
    assert env.host_bridge.status_counts["OK"] == 4
    stats = env.oracle_stats()  # the QE oracle's time counters pass through the bridge
    assert stats["evaluations"] == 4 and stats["computed"] == 3
    assert 0.0 < stats["core_utilisation"] <= 1.0 and stats["dft_seconds"] > 0
