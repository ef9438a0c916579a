"""Executors: local process pool and Dask distributed (real LocalCluster on 127.0.0.1)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from qe_helpers import alive, fake_pw

from crystaljax.oracles.executors import (
    DaskExecutor,
    LocalPoolExecutor,
    kill_descendants,
    make_executor,
    plan_local_workers,
)
from crystaljax.oracles.qe.runner import RunnerConfig, run_pw


def worker_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_plan_fits_the_cores():
    assert plan_local_workers(cores=16, mpi_ranks=2, threads=2) == 4
    assert plan_local_workers(cores=2, mpi_ranks=4) == 1
    assert plan_local_workers(cores=2) == 2


def test_local_pool_runs_in_other_processes():
    with LocalPoolExecutor(max_workers=2) as pool:
        results = [pool.submit(worker_pid, i).result(timeout=60) for i in range(4)]
        assert [r[0] for r in results] == [0, 1, 4, 9]
        assert all(pid != os.getpid() for _, pid in results)
        assert {pid for _, pid in results} <= set(pool.worker_pids())
        pool.reset()  # a fresh pool after a reset still works
        assert pool.submit(worker_pid, 3).result(timeout=60)[0] == 9


def test_dask_local_cluster():
    with DaskExecutor(n_workers=1, processes=False) as ex:
        assert ex.max_workers == 1
        futures = [ex.submit(worker_pid, i) for i in range(3)]
        assert [f.result(timeout=60)[0] for f in futures] == [0, 1, 4]
        assert ex.client.scheduler.address.startswith("tcp://127.0.0.1")
        cluster = ex.cluster
    assert cluster.status.name == "closed" and ex.client.status == "closed"
    ex.shutdown()  # a second shutdown is harmless


def test_unknown_executor():
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("slurm")


def _hanging_pw_pids(scratch: Path, timeout: float = 60.0) -> tuple[int, int]:
    """(pid of the fake pw.x, pid of its child) once a hanging fake run has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(scratch.glob("*/child.pid"))
        if found and found[0].read_text():
            child = int(found[0].read_text())
            return psutil.Process(child).ppid(), child
        time.sleep(0.1)
    raise AssertionError("the fake pw.x did not start")


def _wait_dead(pids: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_reset_stops_the_programs_a_worker_started(tmp_path):
    """A pool reset (after a job overran its deadline) leaves no pw.x behind,
    although pw.x runs in its own session, out of reach of the worker's group."""
    config = RunnerConfig(pw_command=fake_pw(tmp_path, "hang"), time_limit=1000.0,
                          scratch_root=str(tmp_path / "scratch"))
    pool = LocalPoolExecutor(max_workers=1)
    try:
        future = pool.submit(run_pw, "", config, "hang")
        pw, child = _hanging_pw_pids(tmp_path / "scratch")
        worker = psutil.Process(pw).ppid()
        pool.reset()
        assert _wait_dead([worker, pw, child]) == []
        # the pool marks the future failed from its own thread, shortly after the workers die
        concurrent.futures.wait([future], timeout=20)
        assert future.done()
        assert pool.submit(worker_pid, 4).result(timeout=60)[0] == 16  # usable again
    finally:
        pool.shutdown()


PARENT_SCRIPT = """
import sys, time
from crystaljax.oracles.executors import LocalPoolExecutor
from crystaljax.oracles.qe.runner import RunnerConfig, run_pw

if __name__ == "__main__":
    config = RunnerConfig(pw_command=sys.argv[1], time_limit=1000.0, scratch_root=sys.argv[2])
    pool = LocalPoolExecutor(max_workers=1)
    pool.submit(run_pw, "", config, "hang")
    time.sleep(1000)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_pw_outlives_a_killed_parent(tmp_path, sig):
    """Killing the process that owns the pool (SLURM's SIGTERM, the OOM killer's
    SIGKILL) stops its workers and their pw.x within seconds, not at pw.x's time limit."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    scratch = tmp_path / "scratch"
    parent = subprocess.Popen([sys.executable, str(script), fake_pw(tmp_path, "hang"), str(scratch)])
    try:
        pw, child = _hanging_pw_pids(scratch)
        worker = psutil.Process(pw).ppid()
        assert psutil.Process(worker).ppid() == parent.pid
        parent.send_signal(sig)
        parent.wait(timeout=30)
        assert _wait_dead([worker, pw, child]) == []
    finally:
        parent.kill()
        parent.wait()


def test_kill_descendants_reaches_other_sessions(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(1000)\n")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
        assert kill_descendants(parent.pid, grace=2.0) == 1
        assert _wait_dead([grandchild]) == []
        assert parent.poll() is None  # only the descendants, not the process itself
    finally:
        parent.kill()
        parent.wait()
