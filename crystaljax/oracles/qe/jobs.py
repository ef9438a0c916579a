"""One crystal's job of the QE oracle: the input check before it is submitted, the job
sent to a worker (:class:`QEJob`, picklable) and what the worker runs (:func:`run_job`)."""

from __future__ import annotations

import dataclasses
import time
import traceback

import numpy as np
from pymatgen.core import Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.qe.family import FamilySource, PseudoFamily
from crystaljax.oracles.qe.inputs import PwSettings, plane_wave_cutoffs
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.recipes import get_recipe
from crystaljax.oracles.qe.runner import RunnerConfig

#: Atoms closer than this (Å) make a crystal invalid input.
MIN_DISTANCE = 0.5


def check_structure(structure: Structure, family: PseudoFamily) -> OracleResult | None:
    """An INVALID_INPUT result if ``structure`` cannot be computed with ``family`` (disordered
    or element-less sites, a missing pseudopotential, atoms closer than
    :data:`MIN_DISTANCE`), else ``None``."""
    if not structure.is_ordered:
        return OracleResult.failure(Status.INVALID_INPUT, "disordered sites are not supported")
    try:
        symbols = {site.specie.symbol for site in structure}
    except AttributeError:
        return OracleResult.failure(Status.INVALID_INPUT, "a site has no chemical element")
    missing = family.missing(symbols)
    if missing:
        why = "; ".join(
            f"{e}: {family.unavailable[e]}" for e in missing if e in family.unavailable
        )
        return OracleResult.failure(
            Status.INVALID_INPUT,
            f"no pseudopotential for {', '.join(missing)} in family {family.name!r}"
            + (f" ({why})" if why else ""),
        )
    if len(structure) > 1:
        dmin = float(structure.distance_matrix[~np.eye(len(structure), dtype=bool)].min())
        if dmin < MIN_DISTANCE:
            return OracleResult.failure(
                Status.INVALID_INPUT, f"atoms {dmin:.2f} Å apart (< {MIN_DISTANCE} Å)"
            )
    return None


@dataclasses.dataclass(frozen=True)
class QEJob:
    """One crystal's computation, as sent to a worker."""

    property_name: str
    structure: dict
    family: FamilySource
    settings: PwSettings
    recipe: RecipeOptions
    runner: RunnerConfig


def run_job(job: QEJob) -> OracleResult:
    """Compute one property in a worker. Never raises: errors become ORACLE_ERROR. The
    result's ``extra["cutoffs_ry"]`` is [ecutwfc, ecutrho] of its runs (the preset's
    cutoffs differ per property)."""
    start = time.monotonic()
    try:
        structure = Structure.from_dict(job.structure)
        family = job.family.load()
        result = get_recipe(job.property_name)(
            structure, family, job.settings, job.runner, job.recipe)
        result.extra.setdefault(
            "cutoffs_ry", list(plane_wave_cutoffs(structure, job.settings, family)))
        return result
    except Exception as exc:
        return OracleResult(
            float("nan"), Status.ORACLE_ERROR, f"{type(exc).__name__}: {exc}",
            time.monotonic() - start, {"traceback": traceback.format_exc(limit=5)},
        )


def worker_ready(family: FamilySource | None = None) -> int:
    """A no-op job that returns the worker's process id. Submitting it starts a pool worker
    and imports this module (and what :func:`run_job` needs) there, so that a benchmark can
    time jobs on a warm pool (about 3 s of start-up on the 2-core AMD EPYC); with
    ``family``, it also loads that pseudopotential family, as a worker's first job does
    once (0.1-0.4 s: the files' hashes, ld1.x's version)."""
    import os

    if family is not None:
        family.load()
    return os.getpid()


__all__ = ["MIN_DISTANCE", "QEJob", "check_structure", "run_job", "worker_ready"]
