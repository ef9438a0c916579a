"""QEOracle: the Quantum ESPRESSO host oracle (implements ``HostOracle``).

``evaluate`` receives all finished crystals of one env step. For each it
checks the input (pseudopotentials, ordered sites, no overlapping atoms),
looks it up in the cache (symmetry-equivalent crystals share an entry),
submits the misses to the executor (identical crystals of one batch run once),
waits for all with a deadline, stores every result (failures included) in the
cache, and returns one :class:`OracleResult` per crystal. It never raises.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.cache import ResultCache, settings_hash
from crystaljax.oracles.executors import (
    Executor,
    LocalPoolExecutor,
    make_executor,
    plan_local_workers,
)
from crystaljax.oracles.qe.inputs import PwSettings
from crystaljax.oracles.qe.presets import GTH_VARIANTS, Preset, get_preset
from crystaljax.oracles.qe.pseudopotentials import (
    PseudoFamily,
    load_upf_family,
    write_gth_family,
)
from crystaljax.oracles.qe.recipes import RECIPES, RecipeOptions
from crystaljax.oracles.qe.runner import RunnerConfig

#: Bumped when a change in crystaljax's own code changes results (part of the cache key).
ORACLE_VERSION = "qe-1"
#: Atoms closer than this (Å) make a crystal invalid input.
MIN_DISTANCE = 0.5


def default_cache_dir() -> Path:
    """``$CRYSTALJAX_CACHE_DIR`` or ``~/.cache/crystaljax``."""
    env = os.environ.get("CRYSTALJAX_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "crystaljax"


@dataclasses.dataclass(frozen=True)
class FamilySource:
    """How a worker obtains the pseudopotential family (picklable, re-creatable anywhere).

    Attributes:
      kind: ``gth`` (generated from cp2k-data) or ``upf`` (a user mapping file).
      directory: where GTH files are written (``gth``).
      cutoffs: element -> (ecutwfc, ecutrho) in Ry (``gth``).
      variants: element -> CP2K entry name (``gth``).
      generated: element -> ld1.x input generated on the worker (``gth``; see
        :func:`~crystaljax.oracles.qe.pseudopotentials.generate_ld1_pseudo`).
      mapping_file: JSON mapping file (``upf``).
    """

    kind: str
    directory: str = ""
    cutoffs: tuple[tuple[str, tuple[float, float]], ...] = ()
    variants: tuple[tuple[str, str], ...] = ()
    mapping_file: str = ""
    generated: tuple[tuple[str, str], ...] = ()

    def load(self) -> PseudoFamily:
        """Create (GTH) or read (UPF) the family."""
        return _load_family(self)


_FAMILIES: dict[FamilySource, PseudoFamily] = {}


def _load_family(source: FamilySource) -> PseudoFamily:
    family = _FAMILIES.get(source)
    if family is None:
        if source.kind == "gth":
            family = write_gth_family(
                source.directory, dict(source.cutoffs), dict(source.variants),
                generated=dict(source.generated),
            )
        elif source.kind == "upf":
            family = load_upf_family(source.mapping_file)
        else:
            raise ValueError(f"unknown pseudopotential family kind {source.kind!r}")
        _FAMILIES[source] = family
    return family


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
    """Compute one property in a worker. Never raises: errors become ORACLE_ERROR."""
    start = time.monotonic()
    try:
        recipe, _unit = RECIPES[job.property_name]
        structure = Structure.from_dict(job.structure)
        return recipe(structure, job.family.load(), job.settings, job.runner, job.recipe)
    except Exception as exc:
        return OracleResult(
            float("nan"), Status.ORACLE_ERROR, f"{type(exc).__name__}: {exc}",
            time.monotonic() - start, {"traceback": traceback.format_exc(limit=5)},
        )


#: pw.x runs per property (bounds a job's wall time: runs x time limit).
RUNS_PER_PROPERTY = {"band_gap": 2, "density": 1}


class QEOracle:
    """Quantum ESPRESSO property oracle for batches of finished crystals.

    Args:
      property_name: ``band_gap`` (eV), ``density`` (g/cm3) or ``bulk_modulus`` (GPa).
      preset: preset name or :class:`Preset` (cutoffs, numerics, time limit).
      executor: where jobs run (default: a local process pool sized so that
        workers x mpi_ranks x threads fits the cores).
      cache: a :class:`ResultCache`, a path to its file, or ``None`` for no cache.
      runner: pw.x launch settings (default: ranks/threads 1, preset's time limit).
      upf_mapping: JSON mapping file of a UPF family to use instead of GTH.
      pseudo_dir: where GTH (and ld1.x) files are generated (default: cache dir / pseudos).
      settings: overrides of the preset's :class:`PwSettings` fields.
      recipe: overrides of the preset's :class:`RecipeOptions` fields.
    """

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
    ) -> None:
        if property_name not in RECIPES:
            raise ValueError(
                f"unknown property {property_name!r}; expected one of {sorted(RECIPES)}"
            )
        self.property_name = property_name
        self.unit = RECIPES[property_name][1]
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.settings = self.preset.settings.replace(**dict(settings or {}))
        self.recipe = dataclasses.replace(self.preset.recipe, **dict(recipe or {}))
        self.runner = runner or RunnerConfig(time_limit=self.preset.time_limit)
        if upf_mapping is not None:
            self.family_source = FamilySource("upf", mapping_file=str(Path(upf_mapping).resolve()))
        else:
            directory = Path(pseudo_dir or default_cache_dir() / "pseudos" / "gth-pbe-cp2k")
            self.family_source = FamilySource(
                "gth", directory=str(directory.resolve()),
                cutoffs=tuple(sorted(self.preset.cutoffs.items())),
                variants=tuple(sorted(GTH_VARIANTS.items())),
                generated=tuple(sorted(self.preset.generated.items())),
            )
        self.family = self.family_source.load()
        self._own_executor = executor is None
        self.executor = executor or LocalPoolExecutor(
            plan_local_workers(mpi_ranks=self.runner.mpi_ranks, threads=self.runner.threads)
        )
        if isinstance(cache, (str, Path)):
            cache = ResultCache(cache)
        self.cache = cache
        self.settings_hash = settings_hash({
            "version": ORACLE_VERSION, "property": property_name,
            "family": self.family.fingerprint(), "settings": dataclasses.asdict(self.settings),
            "recipe": dataclasses.asdict(self.recipe),
        })

    # -- public -------------------------------------------------------------------------------

    def evaluate(self, structures: Sequence[Structure]) -> list[OracleResult]:
        """One result per crystal (value in :attr:`unit`); never raises."""
        try:
            return self._evaluate(list(structures))
        except Exception as exc:  # last line of defence: training must go on
            reason = f"{type(exc).__name__}: {exc}"
            return [OracleResult.failure(Status.ORACLE_ERROR, reason) for _ in structures]

    def job_time_limit(self) -> float:
        """Longest wall time one crystal may take (s): pw.x runs x time limit + margin."""
        runs = RUNS_PER_PROPERTY.get(self.property_name, len(self.recipe.volume_scales))
        return runs * self.runner.time_limit + 60.0

    def close(self) -> None:
        """Shut down an executor this oracle created and close the cache."""
        if self._own_executor:
            self.executor.shutdown()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> "QEOracle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def check(self, structure: Structure) -> OracleResult | None:
        """An INVALID_INPUT result if ``structure`` cannot be computed, else ``None``."""
        if not structure.is_ordered:
            return OracleResult.failure(Status.INVALID_INPUT, "disordered sites are not supported")
        try:
            symbols = {site.specie.symbol for site in structure}
        except AttributeError:
            return OracleResult.failure(Status.INVALID_INPUT, "a site has no chemical element")
        missing = self.family.missing(symbols)
        if missing:
            why = "; ".join(
                f"{e}: {self.family.unavailable[e]}" for e in missing if e in self.family.unavailable
            )
            return OracleResult.failure(
                Status.INVALID_INPUT,
                f"no pseudopotential for {', '.join(missing)} in family {self.family.name!r}"
                + (f" ({why})" if why else ""),
            )
        if len(structure) > 1:
            dmin = float(structure.distance_matrix[~np.eye(len(structure), dtype=bool)].min())
            if dmin < MIN_DISTANCE:
                return OracleResult.failure(
                    Status.INVALID_INPUT, f"atoms {dmin:.2f} Å apart (< {MIN_DISTANCE} Å)"
                )
        return None

    def _job(self, structure: Structure) -> QEJob:
        return QEJob(
            self.property_name, structure.as_dict(), self.family_source, self.settings,
            self.recipe, self.runner,
        )

    def _evaluate(self, structures: list[Structure]) -> list[OracleResult]:
        results: list[OracleResult | None] = [None] * len(structures)
        groups: dict[str, list[int]] = {}
        futures: dict[str, Any] = {}
        for i, structure in enumerate(structures):
            try:
                invalid = self.check(structure)
                if invalid is not None:
                    results[i] = invalid
                    continue
                key = self.cache.structure_key(structure) if self.cache else f"batch-{i}"
                if key in groups:
                    groups[key].append(i)
                    continue
                cached = self.cache.get(key, self.settings_hash) if self.cache else None
                if cached is not None:
                    results[i] = cached
                    continue
                groups[key] = [i]
                futures[key] = self.executor.submit(run_job, self._job(structure))
            except Exception as exc:
                results[i] = OracleResult.failure(
                    Status.ORACLE_ERROR, f"{type(exc).__name__}: {exc}"
                )
        waves = math.ceil(len(futures) / max(1, self.executor.max_workers))
        deadline = time.monotonic() + waves * self.job_time_limit()
        overran = False
        for key, future in futures.items():
            try:
                result = future.result(timeout=max(1.0, deadline - time.monotonic()))
            except (concurrent.futures.TimeoutError, TimeoutError):
                overran = True
                cancel = getattr(future, "cancel", None)
                if cancel is not None:  # frees a queued local job or a Dask task
                    cancel()
                result = OracleResult.failure(
                    Status.TIMEOUT, "job exceeded its deadline in the executor"
                )
            except Exception as exc:  # a worker died, the cluster went away, ...
                result = OracleResult.failure(
                    Status.ORACLE_ERROR, f"executor error: {type(exc).__name__}: {exc}"
                )
            if not isinstance(result, OracleResult):
                result = OracleResult.failure(
                    Status.ORACLE_ERROR, f"job returned {type(result).__name__}"
                )
            if self.cache is not None:
                self._store(key, structures[groups[key][0]], result)
            for i in groups[key]:
                results[i] = result
        if overran and isinstance(self.executor, LocalPoolExecutor):
            self.executor.reset()
        return [r if r is not None else OracleResult.failure(Status.ORACLE_ERROR, "no result")
                for r in results]

    def _store(self, key: str, structure: Structure, result: OracleResult) -> None:
        try:
            self.cache.put(key, self.settings_hash, self.property_name, result,
                           structure.composition.formula)
        except Exception as exc:  # a full disk must not stop training; say so in the result
            result.extra["cache_error"] = f"{type(exc).__name__}: {exc}"


def make_qe_oracle(
    property_name: str,
    preset: str = "default",
    executor: str | Executor = "local",
    cache_path: str | Path | None = "default",
    workers: int | None = None,
    mpi_ranks: int = 1,
    threads: int = 1,
    time_limit: float | None = None,
    dask_address: str | None = None,
    upf_mapping: str | Path | None = None,
    scratch_root: str | None = None,
    **overrides: Any,
) -> QEOracle:
    """Build a :class:`QEOracle` with sensible defaults.

    Args:
      property_name: ``band_gap``, ``density`` or ``bulk_modulus``.
      preset: ``default`` (measured cutoffs) or ``test`` (fast, unconverged).
      executor: ``local`` (process pool), ``dask`` (LocalCluster on 127.0.0.1,
        or ``dask_address``'s scheduler) or an executor object.
      cache_path: SQLite file; ``"default"`` = cache dir / ``qe-cache.sqlite``;
        ``None`` disables the cache.
      workers: pool workers / local Dask workers (default: cores // (ranks x threads)).
      mpi_ranks: MPI ranks per pw.x run.
      threads: OpenMP threads per rank.
      time_limit: wall-clock limit per pw.x run (s); default from the preset.
      dask_address: scheduler address for ``executor="dask"``.
      upf_mapping: JSON mapping file of a UPF family (instead of generated GTH).
      scratch_root: parent directory of the per-run scratch directories.
      **overrides: ``settings={...}`` / ``recipe={...}`` field overrides.
    """
    preset_obj = get_preset(preset)
    runner = RunnerConfig(
        mpi_ranks=mpi_ranks, threads=threads,
        time_limit=float(time_limit if time_limit is not None else preset_obj.time_limit),
        scratch_root=scratch_root,
    )
    workers = workers or plan_local_workers(mpi_ranks=mpi_ranks, threads=threads)
    if isinstance(executor, str):
        if executor == "local":
            executor_obj: Executor = make_executor("local", max_workers=workers)
        elif executor == "dask":
            executor_obj = make_executor("dask", address=dask_address, n_workers=workers)
        else:
            raise ValueError(f"unknown executor {executor!r} (expected 'local' or 'dask')")
    else:
        executor_obj = executor
    if cache_path == "default":
        cache_path = default_cache_dir() / "qe-cache.sqlite"
    oracle = QEOracle(
        property_name, preset=preset_obj, executor=executor_obj, cache=cache_path,
        runner=runner, upf_mapping=upf_mapping, **overrides,
    )
    oracle._own_executor = isinstance(executor, str)
    return oracle
