"""Executors: local process pool and Dask distributed (real LocalCluster on 127.0.0.1)."""

from __future__ import annotations

import os

import pytest

from crystaljax.oracles.executors import (
    DaskExecutor,
    LocalPoolExecutor,
    make_executor,
    plan_local_workers,
)


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
        pool.reset()  # a fresh pool after a reset still works
        assert pool.submit(worker_pid, 3).result(timeout=60)[0] == 9


def test_dask_local_cluster():
    with DaskExecutor(n_workers=1, processes=False) as ex:
        assert ex.max_workers == 1
        futures = [ex.submit(worker_pid, i) for i in range(3)]
        assert [f.result(timeout=60)[0] for f in futures] == [0, 1, 4]
        assert ex.client.scheduler.address.startswith("tcp://127.0.0.1")


def test_unknown_executor():
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("slurm")
