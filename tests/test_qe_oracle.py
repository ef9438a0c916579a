"""QEOracle end to end: real pw.x through the executors, cache, dedup, fault injection."""

from __future__ import annotations

import math
import os
import time

import pytest
from qe_helpers import alive, fake_pw, requires_pw, rocksalt

from crystaljax.oracles.base import HostOracle, Status
from crystaljax.oracles.cache import ResultCache
from crystaljax.oracles.executors import DaskExecutor, LocalPoolExecutor
from crystaljax.oracles.qe.oracle import QEOracle, make_qe_oracle
from crystaljax.oracles.qe.runner import RunnerConfig


@pytest.fixture(scope="module")
def pool():
    with LocalPoolExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture(scope="module")
def pseudo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pseudos")


def _oracle(prop, pool, pseudo_dir, tmp_path, pw="pw.x", time_limit=120.0, cache=True):
    runner = RunnerConfig(pw_command=pw, time_limit=time_limit,
                          scratch_root=str(tmp_path / "scratch"))
    return QEOracle(prop, preset="test", executor=pool, runner=runner, pseudo_dir=pseudo_dir,
                    cache=ResultCache(tmp_path / "cache.sqlite") if cache else None)


@requires_pw
def test_batch_dedup_cache_and_invalid_input(pool, pseudo_dir, tmp_path):
    oracle = _oracle("band_gap", pool, pseudo_dir, tmp_path)
    assert isinstance(oracle, HostOracle) and oracle.unit == "eV"
    nacl = rocksalt(5.69, "Na", "Cl")
    swapped = rocksalt(5.69, "Cl", "Na")  # the same crystal, origin on Cl
    xe = rocksalt(5.69, "Na", "Xe")
    first = oracle.evaluate([nacl, swapped, xe])
    assert first[0].status == Status.OK and first[0].value > 3.0
    assert first[1] is first[0]  # computed once for both
    assert first[2].status == Status.INVALID_INPUT and "Xe" in first[2].reason
    assert oracle.cache.stats.misses == 1
    second = oracle.evaluate([swapped])
    assert second[0].extra["cached"] and second[0].value == pytest.approx(first[0].value)
    assert oracle.cache.stats.hits == 1
    overlapping = rocksalt(5.69, "Na", "Cl")
    overlapping.replace(1, "Cl", [0.01, 0.0, 0.0])
    assert oracle.evaluate([overlapping])[0].status == Status.INVALID_INPUT


@pytest.mark.parametrize("mode, status", [
    ("crash", Status.CRASH), ("exit", Status.CRASH), ("garbage", Status.PARSE_ERROR),
    ("scf", Status.SCF_NOT_CONVERGED), ("charge", Status.CHARGE_WRONG),
    ("truncated", Status.PARSE_ERROR),
])
def test_failure_classes_are_recorded_and_cached(mode, status, pool, pseudo_dir, tmp_path):
    oracle = _oracle("density", pool, pseudo_dir, tmp_path, pw=fake_pw(tmp_path, mode))
    result = oracle.evaluate([rocksalt(5.69, "Na", "Cl")])[0]
    assert result.status == status and result.reason and math.isnan(result.value)
    assert os.path.isdir(result.extra["scratch"])  # kept for inspection
    assert os.path.isfile(os.path.join(result.extra["scratch"], "pw.in"))
    assert "output_tail" in result.extra
    assert oracle.cache.stats.failures[status.name] == 1
    assert oracle.evaluate([rocksalt(5.69, "Na", "Cl")])[0].status == status  # from cache
    assert oracle.cache.stats.hits == 1


def test_missing_program_is_a_crash_not_an_exception(pool, pseudo_dir, tmp_path):
    oracle = _oracle("band_gap", pool, pseudo_dir, tmp_path, pw="/nonexistent/pw.x",
                     cache=False)
    result = oracle.evaluate([rocksalt(5.69, "Na", "Cl")])[0]
    assert result.status == Status.CRASH and "cannot start" in result.reason


@requires_pw
def test_hang_is_killed_and_training_goes_on(pool, pseudo_dir, tmp_path):
    hanging = _oracle("density", pool, pseudo_dir, tmp_path, pw=fake_pw(tmp_path, "hang"),
                      time_limit=2.0)
    start = time.monotonic()
    result = hanging.evaluate([rocksalt(5.69, "Na", "Cl")])[0]
    assert time.monotonic() - start < 30.0
    assert result.status == Status.TIMEOUT
    with open(os.path.join(result.extra["scratch"], "child.pid")) as fh:
        child = int(fh.read())
    time.sleep(0.2)
    assert not alive(child)  # the whole process group was killed, not just pw.x
    good = _oracle("density", pool, pseudo_dir, tmp_path / "next")
    after = good.evaluate([rocksalt(5.69, "Na", "Cl")])[0]
    assert after.status == Status.OK and 1.5 < after.value < 3.0


@requires_pw
def test_dask_local_cluster_runs_real_pw(pseudo_dir, tmp_path):
    with DaskExecutor(n_workers=1, processes=False) as dask:
        oracle = _oracle("density", dask, pseudo_dir, tmp_path)
        results = oracle.evaluate([rocksalt(5.69, "Na", "Cl"), rocksalt(5.9, "K", "F")])
    assert [r.status for r in results] == [Status.OK, Status.OK]
    assert all(type(r.value) is float for r in results)
    assert 1.5 < results[0].value < 3.0 and 1.5 < results[1].value < 3.5
    assert results[0].extra["energy_per_atom"] < 0


def test_factory_defaults_and_errors(tmp_path):
    oracle = make_qe_oracle("bulk_modulus", preset="test", cache_path=tmp_path / "c.sqlite",
                            workers=1, pseudo_dir=tmp_path / "pp")
    try:
        assert oracle.unit == "GPa" and oracle.runner.time_limit == 120.0
        assert isinstance(oracle.executor, LocalPoolExecutor)
        assert oracle.job_time_limit() == 5 * 120.0 + 60.0
        assert len(oracle.family.specs) == 50
    finally:
        oracle.close()
    with pytest.raises(ValueError, match="unknown property"):
        QEOracle("hardness", preset="test", cache=None, pseudo_dir=tmp_path / "pp")
    with pytest.raises(KeyError, match="unknown QE preset"):
        make_qe_oracle("band_gap", preset="turbo")
