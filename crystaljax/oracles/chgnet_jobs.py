"""Jobs of the ``chgnet-host`` oracle in pool workers: one model per process, batches with
a time limit, a crystal at a time after a failed batch, and the cache key of a crystal."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import signal
import threading
import time
import traceback
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.chgnet_torch import (
    CHGNetHostOptions,
    TorchCHGNet,
    limit_blas_threads,
)


class _Timeout(BaseException):
    """Raised by the SIGALRM handler (a BaseException: library code's ``except Exception``
    must not swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise :class:`_Timeout` after ``seconds`` (only on the main thread; else no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)



_PROCESS_MODELS: dict[str, TorchCHGNet] = {}
_PROCESS_LOCK = threading.Lock()


def process_model(version: str, threads: int | None = None) -> TorchCHGNet:
    """This process's model of ``version`` (loaded on first use; ``threads`` sets torch's
    intra-op threads and OpenBLAS's threads then)."""
    with _PROCESS_LOCK:
        if version not in _PROCESS_MODELS:
            if threads:
                import torch

                torch.set_num_threads(int(threads))
                limit_blas_threads(int(threads))
            _PROCESS_MODELS[version] = TorchCHGNet(version)
        return _PROCESS_MODELS[version]


def evaluate_chunk(model: TorchCHGNet, property_name: str, structures: Sequence[Structure],
                   options: CHGNetHostOptions) -> list[OracleResult]:
    """Results of a batch of crystals; never raises.

    Checked crystals are computed together (``batch_size`` per model call); when that
    raises or runs over its time limit (``time_limit`` x crystals), they are computed one
    at a time, so that only the crystal at fault gets ``CRASH`` or ``TIMEOUT``.
    """
    results: list[OracleResult | None] = [None] * len(structures)
    valid = []
    for i, structure in enumerate(structures):
        invalid = model.check(structure)
        if invalid is None:
            valid.append(i)
        else:
            results[i] = invalid
    for start in range(0, len(valid), options.batch_size):
        batch = valid[start:start + options.batch_size]
        outcomes = _attempt(model, property_name, [structures[i] for i in batch], options)
        if outcomes is None:  # one crystal failed the batch, or it overran: one at a time
            outcomes = [_attempt(model, property_name, [structures[i]], options)[0]
                        for i in batch]
        for i, result in zip(batch, outcomes, strict=True):
            results[i] = result
    return [r if r is not None else OracleResult.failure(Status.ORACLE_ERROR, "no result")
            for r in results]


def _attempt(model: TorchCHGNet, property_name: str, structures: list[Structure],
             options: CHGNetHostOptions) -> list[OracleResult] | None:
    """Compute ``structures`` together; None when that failed and there are several
    (the caller retries them one by one), else a failed result."""
    limit = options.time_limit * len(structures) if options.time_limit else None
    start = time.monotonic()
    try:
        with _time_limit(limit):
            return model.evaluate(property_name, structures, options)
    except _Timeout:
        if len(structures) > 1:
            return None
        return [OracleResult(float("nan"), Status.TIMEOUT,
                             f"over the time limit of {options.time_limit:g} s",
                             time.monotonic() - start)]
    except Exception as exc:
        if len(structures) > 1:
            return None
        return [OracleResult(float("nan"), Status.CRASH, f"{type(exc).__name__}: {exc}",
                             time.monotonic() - start,
                             {"traceback": traceback.format_exc(limit=5)})]


@dataclasses.dataclass(frozen=True)
class CHGNetJob:
    """A batch of crystals as sent to a pool worker."""

    property_name: str
    structures: tuple[dict, ...]
    options: CHGNetHostOptions


def run_job(job: CHGNetJob) -> list[OracleResult]:
    """Compute a job in a worker (the model is loaded on the worker's first job). Never
    raises: an error of this code becomes ``ORACLE_ERROR`` for each crystal."""
    try:
        model = process_model(job.options.version, job.options.threads)
        structures = [Structure.from_dict(d) for d in job.structures]
        return evaluate_chunk(model, job.property_name, structures, job.options)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return [OracleResult.failure(Status.ORACLE_ERROR, reason,
                                     traceback=traceback.format_exc(limit=5))
                for _ in job.structures]


def structure_key(structure: Structure) -> str:
    """Exact identity of a crystal (species, lattice and fractional coordinates to 1e-6)."""
    lattice = np.round(np.asarray(structure.lattice.matrix, np.float64), 6) + 0.0
    frac = np.round(np.asarray(structure.frac_coords, np.float64) % 1.0, 6) % 1.0 + 0.0
    species = "|".join(str(site.species) for site in structure)
    digest = hashlib.sha1(species.encode())
    digest.update(lattice.tobytes())
    digest.update(frac.tobytes())
    return digest.hexdigest()


#: statuses that are the crystal's own outcome, kept in the cache
