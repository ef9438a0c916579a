"""Executors that run host-oracle jobs concurrently, behind one small interface.

An executor has ``submit(fn, *args) -> future`` (the future has
``result(timeout)``), ``max_workers`` and ``shutdown()``, like
:mod:`concurrent.futures`. Two implementations:

* :class:`LocalPoolExecutor` (default): a local process pool (``spawn`` start
  method, safe next to JAX's threads). Choose ``workers x mpi_ranks x
  threads <= cores``; :func:`plan_local_workers` does that split. A worker
  that gets SIGTERM, or whose parent process is gone (killed, even with
  SIGKILL), stops every program it started (pw.x, mpirun and its ranks) and
  exits, so no DFT run outlives the process that asked for it.
* :class:`DaskExecutor`: Dask distributed; connects to a scheduler address
  (e.g. one started by ``dask-jobqueue``'s ``SLURMCluster``, see docs/DFT.md)
  or starts a ``LocalCluster`` on 127.0.0.1.

Job functions must be importable top-level functions with picklable
arguments (they run in other processes or on other machines).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import psutil

#: seconds between a pool worker's checks that its parent process is still there
PARENT_CHECK_INTERVAL = 1.0
#: seconds a worker's child programs get to exit after SIGTERM before SIGKILL
CHILD_EXIT_GRACE = 3.0


class JobFuture(Protocol):
    """What ``submit`` returns: a handle whose ``result`` waits up to ``timeout`` seconds."""

    def result(self, timeout: float | None = None) -> Any: ...


class Executor(Protocol):
    """The interface every executor implements."""

    max_workers: int

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobFuture: ...

    def shutdown(self) -> None: ...


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def plan_local_workers(
    cores: int | None = None, mpi_ranks: int = 1, threads: int = 1
) -> int:
    """Number of pool workers so that workers x mpi_ranks x threads fits ``cores`` (>= 1)."""
    cores = cores or available_cores()
    return max(1, cores // max(1, mpi_ranks * threads))


class LocalPoolExecutor:
    """A local process pool that recreates itself if a worker dies.

    Args:
      max_workers: pool size (default: :func:`plan_local_workers` with 1 rank, 1 thread).
      start_method: multiprocessing start method (``spawn`` by default: the
        parent may run JAX, whose threads make ``fork`` unsafe).
    """

    def __init__(self, max_workers: int | None = None, start_method: str = "spawn") -> None:
        self.max_workers = max_workers or plan_local_workers()
        self._context = multiprocessing.get_context(start_method)
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.max_workers, mp_context=self._context,
                    initializer=_init_pool_worker,
                )
            return self._pool

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobFuture:
        """Run ``fn(*args, **kwargs)`` in a worker process."""
        pool = self._ensure_pool()
        try:
            return pool.submit(fn, *args, **kwargs)
        except concurrent.futures.process.BrokenProcessPool:
            self.reset()
            return self._ensure_pool().submit(fn, *args, **kwargs)

    def reset(self) -> None:
        """Drop the pool (after a worker died or a job overran); the next submit starts anew."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            _terminate_pool(pool)

    def worker_pids(self) -> list[int]:
        """Process ids of the pool's current workers ([] before the first job or after shutdown)."""
        with self._lock:
            pool = self._pool
        return sorted(getattr(pool, "_processes", None) or {}) if pool is not None else []

    def shutdown(self) -> None:
        """Stop the pool, waiting for its workers to exit (safe to call more than once; a
        later submit starts a new pool)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "LocalPoolExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def kill_descendants(pid: int, grace: float = CHILD_EXIT_GRACE) -> int:
    """SIGTERM every descendant of process ``pid``, SIGKILL those alive after ``grace`` s.

    Descendants in other sessions or process groups are included (pw.x runs in
    its own session). Returns how many processes were signalled.
    """
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    return len(children)


def _init_pool_worker() -> None:
    """Pool-worker initializer: exit cleanly on SIGTERM or when the parent is gone."""
    signal.signal(signal.SIGTERM, _stop_worker)
    parent = os.getppid()
    threading.Thread(
        target=_watch_parent, args=(parent,), name="crystaljax-parent-watch", daemon=True
    ).start()


def _stop_worker(signum: int, frame: Any) -> None:
    """SIGTERM handler of a pool worker: stop the programs it started, then exit at once.

    ``os._exit`` rather than an exception: the pool would catch an exception,
    report it as the job's result and go on to the next queued job.
    """
    kill_descendants(os.getpid())
    os._exit(128 + signum)


def _watch_parent(parent: int, interval: float = PARENT_CHECK_INTERVAL) -> None:
    """Send this process SIGTERM once its parent ``parent`` has exited."""
    while os.getppid() == parent:
        time.sleep(interval)
    os.kill(os.getpid(), signal.SIGTERM)


def _terminate_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Stop a pool without waiting for running jobs (their workers, and what they run, are terminated)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5.0)


class DaskExecutor:
    """Dask distributed executor.

    Args:
      address: scheduler address (``tcp://host:8786``); ``None`` starts a
        ``distributed.LocalCluster`` on 127.0.0.1.
      n_workers: workers of the local cluster.
      processes: local cluster workers are processes (True) or threads of
        this process (False; fine because the work is in pw.x subprocesses).
      threads_per_worker: tasks each local worker runs at once.
    """

    def __init__(
        self,
        address: str | None = None,
        n_workers: int | None = None,
        processes: bool = True,
        threads_per_worker: int = 1,
    ) -> None:
        from distributed import Client, LocalCluster

        self._cluster = None
        self._closed = False
        if address is None:
            n_workers = n_workers or plan_local_workers()
            self._cluster = LocalCluster(
                host="127.0.0.1", protocol="tcp", n_workers=n_workers, processes=processes,
                threads_per_worker=threads_per_worker, dashboard_address=None,
            )
            self.client = Client(self._cluster)
        else:
            self.client = Client(address)
        info = self.client.scheduler_info()
        self.max_workers = max(
            1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())
        )

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobFuture:
        """Run ``fn(*args, **kwargs)`` on a worker (never deduplicated: ``pure=False``)."""
        return self.client.submit(fn, *args, pure=False, **kwargs)

    @property
    def cluster(self) -> Any:
        """The ``LocalCluster`` this executor started (``None`` when given an address)."""
        return self._cluster

    def shutdown(self) -> None:
        """Close the client and the local cluster this executor started (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def make_executor(kind: str = "local", **options: Any) -> Executor:
    """Build an executor by name: ``local`` (process pool) or ``dask``.

    ``options`` go to the constructor (``max_workers`` / ``address``,
    ``n_workers``, ``processes``, ``threads_per_worker``).
    """
    if kind == "local":
        return LocalPoolExecutor(**options)
    if kind == "dask":
        return DaskExecutor(**options)
    raise ValueError(f"unknown executor kind {kind!r} (expected 'local' or 'dask')")
