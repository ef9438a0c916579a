"""QEOracle end to end: real pw.x through the executors, cache, dedup, fault injection."""

from __future__ import annotations

import math
import os
import sqlite3
import time

import pytest
from qe_helpers import BrokenExecutor, InlineExecutor, alive, fake_pw, requires_pw, rocksalt

from crystaljax.config import ConfigError
from crystaljax.oracles.base import HostOracle, Status
from crystaljax.oracles.cache import ResultCache
from crystaljax.oracles.executors import DaskExecutor, LocalPoolExecutor
from crystaljax.oracles.qe import attempts
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


def _options(tmp_path, pseudo_dir, **extra):
    return {"preset": "test", "cache_path": str(tmp_path / "cache.sqlite"),
            "pseudo_dir": str(pseudo_dir), "scratch_root": str(tmp_path / "scratch"), **extra}


@requires_pw
def test_batch_dedup_cache_and_invalid_input(pool, pseudo_dir, tmp_path):
    oracle = _oracle("band_gap", pool, pseudo_dir, tmp_path)
    assert isinstance(oracle, HostOracle) and oracle.unit == "eV"
    nacl = rocksalt(5.69, "Na", "Cl")
    swapped = rocksalt(5.69, "Cl", "Na")  # the same crystal, origin on Cl
    xe = rocksalt(5.69, "Na", "Xe")
    first = oracle.evaluate([nacl, swapped, xe])
    assert first[0].status == Status.OK and first[0].value > 3.0
    assert first[0].extra["cutoffs_ry"] == [35.0, 140.0]  # the test preset's, recorded
    assert first[1] is first[0]  # computed once for both
    assert first[2].status == Status.INVALID_INPUT and "Xe" in first[2].reason
    assert oracle.cache.stats.misses == 1
    second = oracle.evaluate([swapped])
    assert second[0].extra["cached"] and second[0].value == pytest.approx(first[0].value)
    assert oracle.cache.stats.hits == 1
    stats = oracle.stats()
    assert (stats["evaluated"], stats["computed"], stats["batch_duplicates"]) == (4, 1, 1)
    assert (stats["cache_hits"], stats["invalid_input"], stats["not_cached"]) == (1, 1, 0)
    assert stats["dft_seconds"] > 0 and stats["failures"] == {}
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
    assert "output_tail" in result.extra and result.extra["cutoffs_ry"] == [35.0, 140.0]
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
        assert isinstance(oracle.executor, LocalPoolExecutor) and oracle.owns_executor
        assert oracle.executor.max_workers == 1 and oracle.can_fail
        assert oracle.job_time_limit() == 2 * 120.0 + 60.0  # the two pressure runs
        assert len(oracle.family.specs) == 50
    finally:
        oracle.close()
    assert oracle.closed and oracle.executor.worker_pids() == []
    with pytest.raises(ValueError, match="unknown property"):
        QEOracle("hardness", preset="test", cache=None, pseudo_dir=tmp_path / "pp")
    with pytest.raises(ConfigError, match="preset must be one of"):
        make_qe_oracle("band_gap", preset="turbo")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\]; allowed: .*'preset'"):
        make_qe_oracle("band_gap", colour="x")
    with pytest.raises(ConfigError, match=r"settings: unknown key\(s\) \['kpa'\]; allowed: .*kppa"):
        QEOracle("band_gap", preset="test", cache=None, pseudo_dir=tmp_path / "pp",
                 settings={"kpa": 1})


def test_an_executor_passed_in_is_used_not_shut_down(pseudo_dir, tmp_path):
    inline = InlineExecutor()
    oracle = make_qe_oracle("density", executor=inline, cache_path=None, workers=1,
                            **{k: v for k, v in _options(tmp_path, pseudo_dir).items()
                               if k != "cache_path"})
    assert oracle.executor is inline and not oracle.owns_executor
    oracle.close()
    oracle.close()
    assert inline.shut_down == 0
    assert oracle.evaluate([rocksalt(5.69, "Na", "Cl")])[0].reason == "the QE oracle is closed"


def test_timeout_is_reused_only_under_a_limit_not_larger(pseudo_dir, tmp_path):
    """A TIMEOUT under a 0.5 s limit says nothing about a run allowed 300 s."""
    nacl = rocksalt(5.69, "Na", "Cl")

    def oracle(mode, limit):
        return QEOracle.from_options("density", _options(
            tmp_path, pseudo_dir, pw_command=fake_pw(tmp_path, mode), time_limit=limit),
            executor=InlineExecutor())

    with oracle("hang", 0.5) as short:
        assert short.evaluate([nacl])[0].status == Status.TIMEOUT
        assert short.stats()["not_cached"] == 0
    with oracle("crash", 300.0) as longer:  # computed again: pw.x now fails otherwise
        result = longer.evaluate([nacl])[0]
        assert result.status == Status.CRASH and not result.extra.get("cached")
        assert longer.stats()["computed"] == 1
    with oracle("crash", 0.4) as shorter:
        # the CRASH stored by the 300 s run is the crystal's outcome: reused at any limit
        assert shorter.evaluate([nacl])[0].extra.get("cached")


def test_timeout_entry_answers_a_shorter_limit(pseudo_dir, tmp_path):
    nacl = rocksalt(5.69, "Na", "Cl")
    options = _options(tmp_path, pseudo_dir, pw_command=fake_pw(tmp_path, "hang"))
    with QEOracle.from_options("density", {**options, "time_limit": 0.6},
                               executor=InlineExecutor()) as first:
        assert first.evaluate([nacl])[0].status == Status.TIMEOUT
    inline = InlineExecutor()
    with QEOracle.from_options("density", {**options, "time_limit": 0.3}, executor=inline) as second:
        again = second.evaluate([nacl])[0]
    assert again.status == Status.TIMEOUT and again.extra["cached"] and inline.submitted == 0


def test_machine_failures_are_not_cached(pseudo_dir, tmp_path, monkeypatch):
    nacl = rocksalt(5.69, "Na", "Cl")
    options = _options(tmp_path, pseudo_dir)
    # a pw_command that cannot start: the machine's fault, not the crystal's
    with QEOracle.from_options("band_gap", {**options, "pw_command": "/nonexistent/pw.x"},
                               executor=InlineExecutor()) as missing:
        result = missing.evaluate([nacl])[0]
        assert result.status == Status.CRASH and "cannot start" in result.reason
        assert missing.stats()["not_cached"] == 1 and missing.cache.totals()["entries"] == 0
    # a job lost in the executor (worker died)
    with QEOracle.from_options("density", options, executor=BrokenExecutor()) as broken:
        result = broken.evaluate([nacl])[0]
        assert result.status == Status.ORACLE_ERROR and "worker died" in result.reason
        stats = broken.stats()
        assert stats["executor_errors"] == 1 and stats["computed"] == 0
        assert stats["not_cached"] == 1 and broken.cache.totals()["entries"] == 0

    # an exception in crystaljax's own code inside the job
    def boom(*args, **kwargs):
        raise RuntimeError("bug in the input writer")

    monkeypatch.setattr(attempts, "write_pw_input", boom)  # where _run looks it up
    with QEOracle.from_options("density", options, executor=InlineExecutor()) as buggy:
        result = buggy.evaluate([nacl])[0]
        assert result.status == Status.ORACLE_ERROR and "bug in the input writer" in result.reason
        assert buggy.cache.totals()["entries"] == 0
    monkeypatch.undo()
    # once the machine is fixed the crystal is computed (here: the fake pw.x crashes)
    with QEOracle.from_options("density", {**options, "pw_command": fake_pw(tmp_path, "crash")},
                               executor=InlineExecutor()) as fixed:
        result = fixed.evaluate([nacl])[0]
        assert result.status == Status.CRASH and "cdiaghg" in result.reason
        assert fixed.cache.totals()["entries"] == 1


def _wait_dead(pids, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_close_stops_the_local_pool_it_created(pseudo_dir, tmp_path):
    oracle = QEOracle.from_options("density", _options(
        tmp_path, pseudo_dir, workers=1, pw_command=fake_pw(tmp_path, "crash")))
    assert oracle.owns_executor and oracle.executor.worker_pids() == []  # started lazily
    assert oracle.evaluate([rocksalt(5.69, "Na", "Cl")])[0].status == Status.CRASH
    pids = oracle.executor.worker_pids()
    assert len(pids) == 1 and all(alive(p) for p in pids)
    oracle.close()
    assert _wait_dead(pids) == [] and oracle.executor.worker_pids() == []
    oracle.close()  # idempotent
    with pytest.raises(sqlite3.ProgrammingError):
        oracle.cache.totals()  # the cache is closed


def test_close_stops_the_dask_cluster_it_created(pseudo_dir, tmp_path):
    from distributed.core import Status as DaskStatus

    with QEOracle.from_options("band_gap", _options(
            tmp_path, pseudo_dir, executor="dask", workers=1, dask_processes=False,
            cache_path=None)) as oracle:
        cluster, client = oracle.executor.cluster, oracle.executor.client
        assert cluster.status == DaskStatus.running and oracle.executor.max_workers == 1
    assert cluster.status == DaskStatus.closed and client.status == "closed"
    oracle.close()


def test_worker_ready_loads_the_family_a_first_job_would(pseudo_dir, tmp_path):
    from crystaljax.oracles.qe import family as family_module
    from crystaljax.oracles.qe.jobs import worker_ready

    with _oracle("density", InlineExecutor(), pseudo_dir, tmp_path, cache=False) as oracle:
        source = oracle.family_source
        family_module._FAMILIES.pop(source, None)
        assert worker_ready() == os.getpid() and source not in family_module._FAMILIES
        assert worker_ready(source) == os.getpid()
        loaded = family_module._FAMILIES[source]
        assert source.load() is loaded and loaded.name == oracle.family.name
