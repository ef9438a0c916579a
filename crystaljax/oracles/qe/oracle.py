"""QEOracle: the Quantum ESPRESSO host oracle (implements ``HostOracle``).

``evaluate`` receives all finished crystals of one env step. For each it
checks the input (pseudopotentials, ordered sites, no overlapping atoms),
looks it up in the cache (symmetry-equivalent crystals share an entry),
submits the misses to the executor (identical crystals of one batch run once),
waits for all with a deadline, stores the outcomes of the crystals in the cache
(not the failures of the machine: see :func:`crystaljax.oracles.cache.is_cacheable`),
and returns one :class:`OracleResult` per crystal. It never raises.

Build one with :meth:`QEOracle.from_options` (options: :class:`QEOptions`) or
:func:`make_qe_oracle`; ``close()`` (or ``with``) stops what it started.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from crystaljax.config import replace
from crystaljax.oracles.base import OracleResult, Status, evaluate_guarded
from crystaljax.oracles.cache import ResultCache, settings_hash
from crystaljax.oracles.executors import (
    DaskExecutor,
    Executor,
    LocalPoolExecutor,
    plan_local_workers,
)
from crystaljax.oracles.qe.cost import expected_cost
from crystaljax.oracles.qe.family import FamilySource, PseudoFamily
from crystaljax.oracles.qe.inputs import PwSettings
from crystaljax.oracles.qe.jobs import MIN_DISTANCE, QEJob, check_structure, run_job
from crystaljax.oracles.qe.options import QEOptions, check_recipe, check_settings, default_cache_dir
from crystaljax.oracles.qe.presets import GTH_VARIANTS, Preset, get_preset
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.recipes import get_recipe
from crystaljax.oracles.qe.runner import RunnerConfig

#: Bumped when a change in crystaljax's own code changes results (part of the cache key).
ORACLE_VERSION = "qe-1"
#: Bumped when a change in one recipe changes its results (part of that property's cache
#: key only). band_gap 2: smearing first, fixed occupations only for a possible gap.
RECIPE_VERSIONS = {"band_gap": 2}



#: PwSettings fields added after results were cached: left out of the cache key at their
#: default, so the keys of earlier results (and of runs that continue) do not change
SETTINGS_ADDED_LATER = {"full_accuracy_empty_bands": False, "stress": True}


#: RecipeOptions fields left out of the cache key: they change how pw.x gets to the
#: result, not the result (reuse_density: the SCF's starting density; the same fixed point
#: within the SCF threshold; magnetic runs only from a magnetic neighbour).
RECIPE_NOT_IN_KEY = ("reuse_density",)

#: RecipeOptions fields added later that only the bulk modulus reads: in its cache key
#: only, so the keys of the other properties' earlier results do not change
RECIPE_BULK_MODULUS_ONLY = ("eos_data", "pressure_scales", "pressure_conv_factor")
#: the properties ``recipe.relax`` applies to
RELAXED_PROPERTIES = ("bulk_modulus", "density")


def recipe_key(options: RecipeOptions, property_name: str) -> dict:
    """The recipe options as they enter ``property_name``'s cache key: all but
    :data:`RECIPE_NOT_IN_KEY`, and :data:`RECIPE_BULK_MODULUS_ONLY` for the bulk modulus
    only. ``relax_search`` (added 2026-12-05) enters as ``equilibrium_search: pressure``
    (with the search's ``pressure_conv_factor``) for a relaxed bulk modulus or density
    found by the zero-pressure search only: the E(V) search's keys are as before it
    existed, so its earlier results are reused, and the zero-pressure search's are new."""
    values = dataclasses.asdict(options)
    for name in RECIPE_NOT_IN_KEY:
        del values[name]
    if property_name != "bulk_modulus":
        for name in RECIPE_BULK_MODULUS_ONLY:
            del values[name]
    search = values.pop("relax_search")
    if property_name in RELAXED_PROPERTIES and options.relax != "none" \
            and search == "pressure":
        values["equilibrium_search"] = "pressure"
        values["pressure_conv_factor"] = options.pressure_conv_factor
    return values


def settings_key(settings: PwSettings) -> dict:
    """The pw.x settings as they enter the cache key: every field, except those of
    :data:`SETTINGS_ADDED_LATER` at their default (so older keys stay valid)."""
    values = dataclasses.asdict(settings)
    for name, default in SETTINGS_ADDED_LATER.items():
        if values[name] == default:
            del values[name]
    return values

class QEOracle:
    """Quantum ESPRESSO property oracle for batches of finished crystals.

    Args:
      property_name: ``band_gap`` (eV), ``density`` (g/cm3) or ``bulk_modulus`` (GPa).
      preset: preset name or :class:`Preset` (cutoffs, numerics, time limit).
      executor: where jobs run (default: a local process pool of ``workers``, or as many
        as fit the cores with the runner's MPI ranks x threads each).
      cache: a :class:`ResultCache`, a path to its file, or ``None`` for no cache.
      runner: pw.x launch settings (default: ranks/threads 1, preset's time limit).
      upf_mapping: JSON mapping file of a UPF family to use instead of GTH.
      pseudo_dir: where GTH (and ld1.x) files are generated (default: cache dir / pseudos).
      settings: overrides of the preset's :class:`PwSettings` fields.
      recipe: overrides of the preset's :class:`RecipeOptions` fields.
      owns_executor: whether :meth:`close` shuts the executor down (default: only when
        the oracle created it, i.e. ``executor`` is ``None``).
      workers: size of the default local pool.

    Host-oracle interface: ``property_name``, ``unit``, ``can_fail``, ``evaluate``,
    ``stats()``, ``close()`` (idempotent), context manager.
    """

    #: a crystal can fail (non-converged SCF, time limit, ...): the env's reward range
    #: includes the failure penalty
    can_fail = True

    def __init__(
        self,
        property_name: str,
        preset: str | Preset = "default",
        executor: Executor | None = None,
        cache: ResultCache | str | Path | None = None,
        runner: RunnerConfig | None = None,
        upf_mapping: str | Path | None = None,
        pseudo_dir: str | Path | None = None,
        settings: Mapping[str, Any] | None = None,
        recipe: Mapping[str, Any] | None = None,
        *,
        owns_executor: bool | None = None,
        workers: int | None = None,
    ) -> None:
        self._recipe = get_recipe(property_name)
        self.property_name = property_name
        self.unit = self._recipe.unit
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.settings = replace(self.preset.settings, check_settings(settings), "settings")
        self.recipe = replace(self.preset.recipe, check_recipe(recipe), "recipe")
        self.runner = runner or RunnerConfig(time_limit=self.preset.time_limit)
        if upf_mapping is not None:
            self.family_source = FamilySource("upf", mapping_file=str(Path(upf_mapping).resolve()))
        else:
            directory = Path(pseudo_dir or default_cache_dir() / "pseudos" / "gth-pbe-cp2k")
            self.family_source = FamilySource(
                "gth", directory=str(directory.resolve()),
                cutoffs=tuple(sorted(self.preset.cutoffs_for(property_name,
                                                             self.recipe.relax).items())),
                variants=tuple(sorted(GTH_VARIANTS.items())),
                generated=tuple(sorted(self.preset.generated.items())),
                name=self.preset.family,
            )
        self.family: PseudoFamily = self.family_source.load()
        key = {"version": ORACLE_VERSION, "property": property_name,
               "family": self.family.fingerprint(), "settings": settings_key(self.settings),
               "recipe": recipe_key(self.recipe, property_name)}
        if property_name in RECIPE_VERSIONS:  # absent for version 1: older keys stay valid
            key["recipe_version"] = RECIPE_VERSIONS[property_name]
        self.settings_hash = settings_hash(key)
        self.owns_executor = executor is None if owns_executor is None else bool(owns_executor)
        self.executor: Executor = executor or LocalPoolExecutor(
            workers or plan_local_workers(mpi_ranks=self.runner.mpi_ranks,
                                          threads=self.runner.threads)
        )
        self.cache = ResultCache(cache) if isinstance(cache, (str, Path)) else cache
        self._counts: collections.Counter[str] = collections.Counter()
        self._failures: collections.Counter[str] = collections.Counter()
        self._dft_seconds = 0.0
        self._batch_seconds = 0.0  # wall time from the first submit to the last result
        self._batch_busy_seconds = 0.0  # job seconds inside those batches
        self._closed = False

    @classmethod
    def from_options(
        cls,
        property_name: str,
        options: QEOptions | Mapping[str, Any] | None = None,
        executor: Executor | None = None,
    ) -> "QEOracle":
        """Build the oracle from :class:`QEOptions` (or a mapping of them).

        The preset, the runner and the number of workers are resolved once here. The
        oracle owns (and :meth:`close` shuts down) the executor it creates from
        ``options.executor``; an ``executor`` object passed in is not shut down.

        Raises:
          ConfigError: bad options (unknown key, wrong type, out-of-range value).
          ValueError: unknown property.
        """
        opts = QEOptions.coerce(options)
        get_recipe(property_name)  # fail before starting anything
        preset = opts.preset_obj()
        runner = opts.runner_config(preset)
        owns = executor is None
        if executor is None:
            workers = opts.planned_workers()
            executor = (LocalPoolExecutor(workers) if opts.executor == "local" else
                        DaskExecutor(address=opts.dask_address, n_workers=workers,
                                     processes=opts.dask_processes))
        try:
            return cls(
                property_name, preset=preset, executor=executor, cache=opts.cache_file(),
                runner=runner, upf_mapping=opts.upf_mapping, pseudo_dir=opts.pseudo_dir,
                settings=opts.settings, recipe=opts.recipe, owns_executor=owns,
            )
        except BaseException:
            if owns:
                executor.shutdown()
            raise

    # -- public -------------------------------------------------------------------------------

    def evaluate(self, structures: Sequence[Structure]) -> list[OracleResult]:
        """One result per crystal (value in :attr:`unit`); never raises."""
        return evaluate_guarded(self._evaluate, structures, self._closed, "QE oracle")

    def job_time_limit(self) -> float:
        """Longest wall time one crystal may take (s): pw.x runs x time limit + margin."""
        return self._recipe.runs(self.recipe) * self.runner.time_limit + 60.0

    def stats(self) -> dict:
        """Counters of this process.

        Keys: ``evaluated`` (crystals asked for), ``computed`` (crystals whose job ran
        and returned a result), ``cache_hits``, ``batch_duplicates`` (answered by an
        identical crystal of the same batch), ``invalid_input`` (rejected before any
        run), ``executor_errors``, ``not_cached`` (results kept out of the cache: machine
        failures), ``dft_seconds`` (wall time of the computed jobs), ``batch_seconds``
        (wall time from a batch's first submitted job to its last result, summed),
        ``busy_core_seconds`` (job seconds inside those batches x cores per job),
        ``core_utilisation`` (busy core-seconds of those jobs / core-seconds the executor's
        workers had during the batches; NaN before any batch), ``failures`` (status
        name -> count over computed jobs and executor errors), and ``cache`` (the cache's
        own counters, when there is a cache).
        """
        out: dict[str, Any] = {key: self._counts[key] for key in (
            "evaluated", "computed", "cache_hits", "batch_duplicates", "invalid_input",
            "executor_errors", "not_cached")}
        out["dft_seconds"] = self._dft_seconds
        out["batch_seconds"] = self._batch_seconds
        cores = self.runner.mpi_ranks * self.runner.threads
        available = self._batch_seconds * self.executor.max_workers * cores
        out["busy_core_seconds"] = self._batch_busy_seconds * cores
        out["core_utilisation"] = (self._batch_busy_seconds * cores / available
                                   if available > 0 else float("nan"))
        out["failures"] = dict(self._failures)
        if self.cache is not None:
            out["cache"] = self.cache.stats.as_dict()
        return out

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Shut down the executor this oracle owns (process pool, or Dask client and
        LocalCluster) and close the cache. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.owns_executor:
                self.executor.shutdown()
        finally:
            if self.cache is not None:
                self.cache.close()

    def __enter__(self) -> "QEOracle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def check(self, structure: Structure) -> OracleResult | None:
        """An INVALID_INPUT result if ``structure`` cannot be computed, else ``None``
        (:func:`~crystaljax.oracles.qe.jobs.check_structure`)."""
        return check_structure(structure, self.family)

    def _job(self, structure: Structure) -> QEJob:
        return QEJob(
            self.property_name, structure.as_dict(), self.family_source, self.settings,
            self.recipe, self.runner,
        )

    def _evaluate(self, structures: list[Structure]) -> list[OracleResult]:
        results: list[OracleResult | None] = [None] * len(structures)
        groups: dict[str, list[int]] = {}
        futures: dict[str, Any] = {}
        pending: list[tuple[float, str, Structure]] = []
        limit = self.runner.time_limit
        self._counts["evaluated"] += len(structures)
        for i, structure in enumerate(structures):
            try:
                invalid = self.check(structure)
                if invalid is not None:
                    self._counts["invalid_input"] += 1
                    results[i] = invalid
                    continue
                key = self.cache.structure_key(structure) if self.cache else f"batch-{i}"
                if key in groups:
                    self._counts["batch_duplicates"] += 1
                    groups[key].append(i)
                    continue
                cached = self.cache.get(key, self.settings_hash, limit) if self.cache else None
                if cached is not None:
                    self._counts["cache_hits"] += 1
                    results[i] = cached
                    continue
                groups[key] = [i]
                pending.append((self._expected_cost(structure), key, structure))
            except Exception as exc:
                results[i] = OracleResult.failure(
                    Status.ORACLE_ERROR, f"{type(exc).__name__}: {exc}"
                )
        # longest expected first: the last wave of a batch is then its shortest jobs
        started = time.monotonic()
        for _, key, structure in sorted(pending, key=lambda job: -job[0]):
            try:
                futures[key] = self.executor.submit(run_job, self._job(structure))
            except Exception as exc:
                failed = OracleResult.failure(Status.ORACLE_ERROR, f"{type(exc).__name__}: {exc}")
                for i in groups[key]:
                    results[i] = failed
        computed_before = self._dft_seconds
        waves = math.ceil(len(futures) / max(1, self.executor.max_workers))
        deadline = time.monotonic() + waves * self.job_time_limit()
        overran = False
        for key, future in futures.items():
            result = self._wait(future, deadline)
            if result.extra.get("executor_deadline"):
                overran = True
            if self.cache is not None:
                self._store(key, structures[groups[key][0]], result)
            for i in groups[key]:
                results[i] = result
        if futures:
            self._batch_seconds += time.monotonic() - started
            self._batch_busy_seconds += self._dft_seconds - computed_before
        if overran and isinstance(self.executor, LocalPoolExecutor):
            self.executor.reset()
        return [r if r is not None else OracleResult.failure(Status.ORACLE_ERROR, "no result")
                for r in results]

    def _expected_cost(self, structure: Structure) -> float:
        """:func:`~crystaljax.oracles.qe.cost.expected_cost` (0 if it cannot be estimated)."""
        try:
            return expected_cost(structure, self.family, self.settings)
        except Exception:  # noqa: BLE001 - an estimate only orders the queue
            return 0.0

    def _wait(self, future: Any, deadline: float) -> OracleResult:
        """The job's result by ``deadline``; executor trouble becomes a failed result."""
        try:
            result = future.result(timeout=max(1.0, deadline - time.monotonic()))
        except (concurrent.futures.TimeoutError, TimeoutError):
            cancel = getattr(future, "cancel", None)
            if cancel is not None:  # frees a queued local job or a Dask task
                cancel()
            result = OracleResult.failure(
                Status.TIMEOUT, "job exceeded its deadline in the executor",
                executor_deadline=True,
            )
        except Exception as exc:  # a worker died, the cluster went away, ...
            result = OracleResult.failure(
                Status.ORACLE_ERROR, f"executor error: {type(exc).__name__}: {exc}"
            )
        if not isinstance(result, OracleResult):
            result = OracleResult.failure(
                Status.ORACLE_ERROR, f"job returned {type(result).__name__}"
            )
        if result.extra.get("executor_deadline") or result.reason.startswith("executor error"):
            self._counts["executor_errors"] += 1
        else:
            self._counts["computed"] += 1
            self._dft_seconds += float(result.seconds)
        if result.status != Status.OK:
            self._failures[Status(result.status).name] += 1
        return result

    def _store(self, key: str, structure: Structure, result: OracleResult) -> None:
        try:
            stored = self.cache.put(key, self.settings_hash, self.property_name, result,
                                    structure.composition.formula, self.runner.time_limit)
        except Exception as exc:  # a full disk must not stop training; say so in the result
            result.extra["cache_error"] = f"{type(exc).__name__}: {exc}"
            return
        if not stored:
            self._counts["not_cached"] += 1


def make_qe_oracle(property_name: str, **options: Any) -> QEOracle:
    """Build a :class:`QEOracle`: ``QEOracle.from_options(property_name, options)``.

    ``options`` are the keys of :class:`QEOptions` (``preset``, ``executor``,
    ``cache_path``, ``workers``, ``mpi_ranks``, ``threads``, ``time_limit``, ...; see
    docs/DFT.md). ``executor`` may also be an executor object, which the oracle uses
    but does not shut down.

    Raises:
      ConfigError: an unknown key (the message lists the allowed ones), a wrong type or
        an out-of-range value.
      ValueError: unknown property.
    """
    executor = options.get("executor")
    if not isinstance(executor, str):  # an executor object, or None for the default
        options = {k: v for k, v in options.items() if k != "executor"}
    else:
        executor = None
    return QEOracle.from_options(property_name, QEOptions.from_mapping(options, "make_qe_oracle"),
                                 executor=executor)


__all__ = ["MIN_DISTANCE", "ORACLE_VERSION", "RECIPE_VERSIONS", "QEJob", "QEOptions", "QEOracle",
           "default_cache_dir", "make_qe_oracle", "run_job"]
