"""QEOptions: typed, checked oracle options that are cheap to build (nothing starts)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from crystaljax.config import ConfigError, from_mapping
from crystaljax.oracles.qe.cli import qe_properties
from crystaljax.oracles.qe.options import QEOptions, option_keys, setting_keys
from crystaljax.oracles.qe.recipes import RECIPES, RecipeOptions
from crystaljax.properties import get_property


@pytest.mark.parametrize("values, message", [
    ({"colour": "x"}, r"unknown key\(s\) \['colour'\]; allowed: \['cache_path', .*'workers'\]"),
    ({"time_limit": math.nan}, "time_limit must be a finite number"),
    ({"time_limit": -1}, "time_limit must be > 0"),
    ({"workers": 0}, "workers must be >= 1"),
    ({"mpi_ranks": "two"}, "mpi_ranks must be an integer"),
    ({"preset": "turbo"}, r"preset must be one of \['default', 'gth', 'fast', 'test'\]"),
    ({"executor": "slurm"}, "executor must be one of"),
    ({"keep_failed_runs": -2}, "keep_failed_runs must be >= 0"),
    ({"settings": {"kpa": 100}}, r"settings: unknown key\(s\) \['kpa'\]; allowed: .*'kppa'"),
    ({"settings": {"kppa": 0}}, "settings.kppa must be > 0"),
    ({"settings": {"nstep": 5}}, "settings.nstep cannot be overridden: use recipe.nstep"),
    ({"settings": [1]}, "settings must be a mapping"),
    ({"recipe": {"steps": 5}}, r"recipe: unknown key\(s\) \['steps'\]; allowed: .*'nstep'"),
    ({"recipe": {"eos": "magic"}}, "recipe.eos must be one of"),
    ({"recipe": {"volume_scales": [1.0, 1.0, 1.01]}}, "at least 3 different"),
    ({"dask_address": "tcp://h:8786"}, "executor is 'local'"),
])
def test_bad_options_are_one_line_config_errors(values, message):
    with pytest.raises(ConfigError, match=message) as err:
        from_mapping(QEOptions, values, "env.oracle_options")
    assert str(err.value).startswith("env.oracle_options") and "\n" not in str(err.value)


def test_building_options_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALJAX_CACHE_DIR", str(tmp_path / "home"))
    opts = from_mapping(QEOptions, {"preset": "fast", "time_limit": "120", "executor": "dask",
                                    "settings.kppa": 500, "recipe": {"volume_scales": [0.99, 1, 1.01]},
                                    "mpi_ranks": 2}, "env.oracle_options")
    assert not (tmp_path / "home").exists()  # no cache file, no pseudopotentials yet
    assert opts.time_limit == 120.0 and opts.settings == {"kppa": 500.0}
    assert opts.recipe == {"volume_scales": (0.99, 1.0, 1.01)}
    runner = opts.runner_config()
    assert (runner.time_limit, runner.mpi_ranks, runner.keep_failed_runs) == (120.0, 2, 20)
    assert opts.cache_file() == tmp_path / "home" / "qe-cache.sqlite"
    assert QEOptions(cache_path=None).cache_file() is None
    assert QEOptions().runner_config().time_limit == 3600.0  # the default preset's


def test_paths_and_direct_construction():
    opts = QEOptions.from_mapping({"cache_path": Path("/x/c.sqlite"), "pseudo_dir": Path("/pp")})
    assert opts.cache_path == "/x/c.sqlite" and opts.pseudo_dir == "/pp"
    assert QEOptions(scratch_root=Path("/s")).scratch_root == "/s"
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        QEOptions(threads=0)
    assert QEOptions.coerce(None) == QEOptions() and QEOptions.coerce(opts) is opts
    assert "keep_failed_runs" in option_keys() and "nstep" not in setting_keys()
    assert QEOptions(workers=3).planned_workers() == 3


def test_recipes_follow_the_property_registry():
    assert qe_properties() == sorted(RECIPES)
    for name, recipe in RECIPES.items():
        assert recipe.unit == get_property(name).unit and "qe" in get_property(name).oracles
    scan = RecipeOptions(eos_data="energy", volume_scales=(0.9, 1.0, 1.1))
    runs = {name: recipe.runs(scan) for name, recipe in RECIPES.items()}
    assert runs == {"band_gap": 2, "density": 1, "bulk_modulus": 3}
