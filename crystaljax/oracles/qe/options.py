"""QEOptions: every option of the Quantum ESPRESSO oracle, typed and checked.

Build it with :func:`crystaljax.config.from_mapping` (what the env config does with
``oracle_options``), :meth:`QEOptions.from_mapping` (also accepts ``pathlib`` paths) or
directly; a misspelt key, a wrong type or an out-of-range value raises
:class:`~crystaljax.config.ConfigError` naming the key (and the allowed keys). Building
options is cheap: nothing is started (no pw.x, no process pool, no Dask cluster, no
cache file) until :meth:`crystaljax.oracles.qe.oracle.QEOracle.from_options`.

Example::

    from crystaljax.config import from_mapping
    opts = from_mapping(QEOptions, {"preset": "fast", "time_limit": 120,
                                    "recipe": {"nstep": 5}}, "env.oracle_options")
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crystaljax.config import ConfigError, check, from_mapping, nest_dotted, option, replace
from crystaljax.oracles.executors import plan_local_workers
from crystaljax.oracles.qe.inputs import RECIPE_OWNED_SETTINGS, PwSettings
from crystaljax.oracles.qe.presets import PRESETS, Preset
from crystaljax.oracles.qe.recipes import RecipeOptions
from crystaljax.oracles.qe.runner import RunnerConfig
from crystaljax.paths import default_cache_dir

#: options that name files or directories (``os.PathLike`` values become ``str``)
PATH_OPTIONS = ("cache_path", "pseudo_dir", "upf_mapping", "scratch_root")


def setting_keys() -> list[str]:
    """Keys allowed in ``settings`` (PwSettings fields that no recipe sets itself)."""
    return sorted(f.name for f in dataclasses.fields(PwSettings)
                  if f.name not in RECIPE_OWNED_SETTINGS)


def check_settings(overrides: Mapping[str, Any] | None, where: str = "settings") -> dict:
    """``overrides`` of :class:`PwSettings` fields, checked and converted.

    Raises:
      ConfigError: not a mapping, an unknown key (the message lists the allowed ones), a
        field the recipes set themselves (the message says what to use), a bad value.
    """
    values = _mapping(overrides, where)
    owned = sorted(set(values) & set(RECIPE_OWNED_SETTINGS))
    if owned:
        raise ConfigError(f"{where}.{owned[0]} cannot be overridden: "
                          f"{RECIPE_OWNED_SETTINGS[owned[0]]}")
    unknown = sorted(set(values) - set(setting_keys()))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {setting_keys()}")
    checked = replace(PwSettings(), values, where)
    return {key: getattr(checked, key) for key in values}


def check_recipe(overrides: Mapping[str, Any] | None, where: str = "recipe") -> dict:
    """``overrides`` of :class:`RecipeOptions` fields, checked and converted (ConfigError)."""
    values = _mapping(overrides, where)
    checked = replace(RecipeOptions(), values, where)
    return {key: getattr(checked, key) for key in values}


def _mapping(values: Mapping[str, Any] | None, where: str) -> dict:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping of overrides, got {values!r}")
    return nest_dotted(values)


@dataclasses.dataclass(frozen=True)
class QEOptions:
    """Options of :class:`~crystaljax.oracles.qe.oracle.QEOracle` (see docs/DFT.md).

    Attributes:
      preset: ``default`` (measured cutoffs), ``fast`` (capped cutoffs) or ``test``.
      executor: ``local`` (process pool) or ``dask`` (a LocalCluster on 127.0.0.1, or the
        scheduler at ``dask_address``).
      workers: pool workers / local Dask workers (default: cores // (ranks x threads)).
      mpi_ranks: MPI ranks per pw.x run.
      threads: OpenMP threads per rank.
      time_limit: wall-clock limit per pw.x run (s); default: the preset's.
      cache_path: SQLite result cache; ``"default"`` = cache dir / ``qe-cache.sqlite``
        ($CRYSTALJAX_CACHE_DIR or ~/.cache/crystaljax); ``None`` = no cache.
      pseudo_dir: where GTH and ld1.x files are generated (default: cache dir / pseudos).
      upf_mapping: JSON mapping file of a UPF family (instead of the generated GTH one).
      scratch_root: parent of the per-run directories (default: $TMPDIR/crystaljax-qe).
      pw_command: the pw.x executable.
      mpirun: the mpirun executable (``mpi_ranks`` > 1).
      keep_failed_runs: failed run directories kept per scratch root (newest; 0 = none).
      keep_on_success: keep the run directories of successful runs too.
      dask_address: scheduler address (``executor: dask``); ``None`` starts a LocalCluster.
      dask_processes: LocalCluster workers are processes (else threads of this process).
      settings: overrides of the preset's :class:`PwSettings` (keys: :func:`setting_keys`).
      recipe: overrides of the preset's :class:`RecipeOptions`.
    """

    preset: str = option("default", choices=tuple(PRESETS))
    executor: str = option("local", choices=("local", "dask"))
    workers: int | None = option(None, ge=1)
    mpi_ranks: int = option(1, ge=1)
    threads: int = option(1, ge=1)
    time_limit: float | None = option(None, gt=0)
    cache_path: str | None = "default"
    pseudo_dir: str | None = None
    upf_mapping: str | None = None
    scratch_root: str | None = None
    pw_command: str = "pw.x"
    mpirun: str = "mpirun"
    keep_failed_runs: int = option(20, ge=0)
    keep_on_success: bool = False
    dask_address: str | None = None
    dask_processes: bool = True
    settings: dict = option(default_factory=dict)
    recipe: dict = option(default_factory=dict)

    def __post_init__(self) -> None:
        for name in PATH_OPTIONS:
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        check(self)
        object.__setattr__(self, "settings", check_settings(self.settings))
        object.__setattr__(self, "recipe", check_recipe(self.recipe))
        if not self.pw_command.strip():
            raise ConfigError("pw_command must name the pw.x executable, got ''")
        if self.dask_address is not None and self.executor != "dask":
            raise ConfigError(f"dask_address is set but executor is {self.executor!r}; "
                              "use executor: dask")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, where: str = "oracle_options"
                     ) -> "QEOptions":
        """:func:`crystaljax.config.from_mapping`, with ``os.PathLike`` values accepted."""
        if isinstance(values, Mapping):
            values = {k: os.fspath(v) if k in PATH_OPTIONS and isinstance(v, os.PathLike) else v
                      for k, v in values.items()}
        return from_mapping(cls, values, where)

    @classmethod
    def coerce(cls, options: "QEOptions | Mapping[str, Any] | None",
               where: str = "oracle_options") -> "QEOptions":
        """``options`` as QEOptions (a mapping or ``None`` is checked and converted)."""
        return options if isinstance(options, cls) else cls.from_mapping(options, where)

    def preset_obj(self) -> Preset:
        return PRESETS[self.preset]

    def runner_config(self, preset: Preset | None = None) -> RunnerConfig:
        """How to launch pw.x (the time limit defaults to ``preset``'s)."""
        preset = preset or self.preset_obj()
        limit = self.time_limit if self.time_limit is not None else preset.time_limit
        return RunnerConfig(
            pw_command=self.pw_command, mpi_ranks=self.mpi_ranks, threads=self.threads,
            mpirun=self.mpirun, time_limit=float(limit), scratch_root=self.scratch_root,
            keep_on_success=self.keep_on_success, keep_failed_runs=self.keep_failed_runs,
        )

    def planned_workers(self) -> int:
        """``workers``, or as many as fit the cores with ``mpi_ranks`` x ``threads`` each."""
        return self.workers or plan_local_workers(mpi_ranks=self.mpi_ranks, threads=self.threads)

    def cache_file(self) -> Path | None:
        """The cache file (``None``: no cache)."""
        if self.cache_path is None:
            return None
        if self.cache_path == "default":
            return default_cache_dir() / "qe-cache.sqlite"
        return Path(self.cache_path)


def option_keys() -> list[str]:
    """Keys of :class:`QEOptions` (what ``oracle_options`` accepts)."""
    return [f.name for f in dataclasses.fields(QEOptions)]


__all__ = ["PATH_OPTIONS", "QEOptions", "check_recipe", "check_settings", "default_cache_dir",
           "option_keys", "setting_keys"]
