"""Density and bulk modulus at the equilibrium volume (issue 13 item 6): ``recipe.relax``,
the E(V) minimum search and the zero-pressure search, the NO_MINIMUM status and its floor
reward."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.units import GPa
from pymatgen.core import Lattice, Structure
from qe_helpers import requires_pw

from crystaljax.config import ConfigError
from crystaljax.oracles.base import FLOOR_STATUSES, OracleResult, Status
from crystaljax.oracles.cache import ResultCache
from crystaljax.oracles.qe import equilibrium, recipes
from crystaljax.oracles.qe.attempts import _Attempt
from crystaljax.oracles.qe.cells import density_of
from crystaljax.oracles.qe.equation_of_state import (
    B_PRIME_RANGE,
    birch_murnaghan_pressure,
    fit_bulk_modulus,
    fit_equilibrium_pressures,
    fit_pressure_eos,
    search_energy_minimum,
    search_zero_pressure,
)
from crystaljax.oracles.qe.family import write_gth_family
from crystaljax.oracles.qe.options import QEOptions
from crystaljax.oracles.qe.parse import PwOutput, parse_output
from crystaljax.oracles.qe.presets import GTH_VARIANTS, PSLIBRARY_INPUTS, get_preset
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.recipes import RECIPES, bulk_modulus, density
from crystaljax.oracles.qe.restarts import Failure
from crystaljax.oracles.qe.runner import RunnerConfig
from crystaljax.properties import get_property
from crystaljax.rewards import RewardParams

PRESET = get_preset("test")
B0_EV = 80.0 * GPa  # eV/Å^3


def fcc(a: float, element: str = "Al") -> Structure:
    h = a / 2
    return Structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), [element], [[0, 0, 0]])


def birch_murnaghan(v, v0, e0=-10.0, b0=B0_EV, bp=4.5):
    eta = (v0 / v) ** (2.0 / 3.0)
    return e0 + 9.0 * v0 * b0 / 16.0 * ((eta - 1) ** 3 * bp + (eta - 1) ** 2 * (6 - 4 * eta))


# -- options -------------------------------------------------------------------------------

def test_relax_is_a_checked_recipe_option():
    assert RecipeOptions().relax == "none"
    assert QEOptions.from_mapping({"recipe.relax": "volume"}).recipe == {"relax": "volume"}
    for values, message in [({"relax": "sideways"}, "recipe.relax must be one of"),
                            ({"relax_range": [1.0, 1.3]}, "relax_range must hold"),
                            ({"relax_step": 0.5}, "relax_step must be <= 0.1"),
                            ({"relax_max_runs": 3}, "relax_max_runs must be >= 7")]:
        with pytest.raises(ConfigError, match=message):
            QEOptions.from_mapping({"recipe": values})


def test_env_oracle_options_take_relax():
    from crystaljax.training.config import load_run_config

    task = {"env": {"task": "bulk-modulus-perovskite-small-v0"}}
    cfg = load_run_config(task, ["env.oracle_options.recipe.relax=volume"])
    assert cfg.env.oracle_options == {"recipe": {"relax": "volume"}}
    with pytest.raises(ConfigError, match="recipe.relax must be one of"):
        load_run_config(task, ["env.oracle_options.recipe.relax=sideways"])


def test_dft_takes_relax():
    import argparse

    from crystaljax.oracles.qe.cli import add_dft_parser

    parser = argparse.ArgumentParser(prog="crystaljax")
    add_dft_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dft", "x.cif", "--property", "density", "--relax", "full"])
    assert args.relax == "full" and args.relax_search is None
    args = parser.parse_args(["dft", "x.cif", "--property", "density", "--relax", "volume",
                              "--relax-search", "energy"])
    assert args.relax_search == "energy"
    with pytest.raises(SystemExit):
        parser.parse_args(["dft", "x.cif", "--property", "density", "--relax", "sideways"])
    with pytest.raises(SystemExit):
        parser.parse_args(["dft", "x.cif", "--property", "density", "--relax-search", "x"])


def test_the_time_budget_counts_the_search():
    none, volume, full = (RecipeOptions(relax=r) for r in ("none", "volume", "full"))
    assert RECIPES["bulk_modulus"].runs(none) == 2 and RECIPES["density"].runs(none) == 1
    assert RECIPES["bulk_modulus"].runs(RecipeOptions(eos_data="energy")) == 5
    assert RECIPES["bulk_modulus"].runs(volume) == RECIPES["density"].runs(volume) == 12
    assert RECIPES["bulk_modulus"].runs(full) == 13


# -- the search (no pw.x) --------------------------------------------------------------------

@pytest.mark.parametrize("a0", [1.0, 0.95, 1 / 0.95, 0.82, 1.2, 1.28])
def test_the_search_brackets_and_samples_the_minimum(a0):
    calls = []

    def energy(s):
        calls.append(s)
        return birch_murnaghan(16.0 * s ** 3, 16.0 * a0 ** 3)

    found = search_energy_minimum(energy)
    assert found.found and not found.reason
    assert len(calls) == len(set(calls)) <= 12
    assert found.window[0] < a0 < found.window[-1] and len(found.window) >= 4
    b0, v0, _ = fit_bulk_modulus([16.0 * s ** 3 for s in found.window],
                                 [found.points[s] for s in found.window])
    assert b0 == pytest.approx(80.0, rel=1e-3) and v0 == pytest.approx(16.0 * a0 ** 3, rel=1e-4)


def test_at_equilibrium_the_search_costs_the_five_runs_of_the_scan():
    found = search_energy_minimum(lambda s: birch_murnaghan(16.0 * s ** 3, 16.0))
    assert sorted(found.points) == found.window == [0.98, 0.99, 1.0, 1.01, 1.02]


@pytest.mark.parametrize("energy, why", [
    (lambda s: -s, "still falls at the largest"),  # expands without end
    (lambda s: s, "still falls at the smallest"),  # collapses
    (lambda s: birch_murnaghan(16.0 * s ** 3, 16.0 * 1.5 ** 3), "largest"),  # minimum beyond
])
def test_no_minimum_in_the_range(energy, why):
    found = search_energy_minimum(energy)
    assert not found.found and why in found.reason and found.window == []
    assert len(found.points) <= 12


def test_a_small_run_budget_gives_up_before_the_bound():
    found = search_energy_minimum(lambda s: -s, max_runs=7)
    assert not found.found and "within 7 runs" in found.reason and len(found.points) <= 7


def _bm_pressure(s, a0, b0=80.0, bp=4.5):
    """P (GPa) at lattice factor ``s`` of a crystal whose V0 is at factor ``a0`` (16 Å^3 at 1)."""
    return float(birch_murnaghan_pressure([16.0 * s ** 3], 16.0 * a0 ** 3, b0, bp)[0])


@pytest.mark.parametrize("a0", [1.0, 1.006, 0.95, 1 / 0.95, 0.82, 1.2, 1.28])
def test_the_zero_pressure_search_brackets_the_zero_and_fits_b0_and_b_prime(a0):
    calls = []

    def pressure(s):
        calls.append(s)
        return _bm_pressure(s, a0)

    found = search_zero_pressure(pressure)
    assert found.found and not found.reason and found.zero == pytest.approx(a0, rel=2e-3)
    assert len(calls) == len(set(calls)) <= 12 and len(found.window) >= 3
    assert found.window[0] < a0 < found.window[-1]
    b0, v0, bp = fit_pressure_eos([16.0 * s ** 3 for s in found.window],
                                  [found.points[s] for s in found.window])
    assert b0 == pytest.approx(80.0, rel=1e-3) and v0 == pytest.approx(16.0 * a0 ** 3, rel=1e-4)
    assert bp == pytest.approx(4.5, rel=1e-2)


@pytest.mark.parametrize("a0", [1.0, 1.006, 0.985, 1.012])
def test_near_equilibrium_the_zero_pressure_search_costs_three_runs(a0):
    """Within one step (2 % in lattice constant) of the zero: 3 runs."""
    found = search_zero_pressure(lambda s: _bm_pressure(s, a0))
    assert len(found.points) == 3 and found.found
    # the energy search needs five or more for the same crystal
    energy = search_energy_minimum(lambda s: birch_murnaghan(16.0 * s ** 3, 16.0 * a0 ** 3))
    assert len(energy.points) >= 5


def test_pressure_noise_moves_b0_by_little():
    rng = np.random.default_rng(0)
    found = search_zero_pressure(lambda s: _bm_pressure(s, 1.01) + rng.normal(0.0, 0.01))
    b0, v0, _ = fit_pressure_eos([16.0 * s ** 3 for s in found.window],
                                 [found.points[s] for s in found.window])
    assert b0 == pytest.approx(80.0, rel=0.03) and v0 == pytest.approx(16.0 * 1.01 ** 3, rel=1e-3)


def test_the_equilibrium_fit_fits_b_prime_only_where_the_volumes_determine_it():
    wide = [0.98, 1.0, 1.02]  # lattice factors: a 4 % span
    narrow = [0.995, 1.0, 1.005]
    for factors, fitted in [(wide, True), (narrow, False)]:
        volumes = [16.0 * f ** 3 for f in factors]
        pressures = [_bm_pressure(f, 1.0, b0=80.0, bp=4.5) for f in factors]
        b0, v0, bp, was_fitted = fit_equilibrium_pressures(volumes, pressures, min_span=0.02)
        assert was_fitted is fitted and v0 == pytest.approx(16.0, rel=1e-3)
        assert bp == (pytest.approx(4.5, rel=1e-3) if fitted else 4.0)
        assert b0 == pytest.approx(80.0, rel=1e-3 if fitted else 0.02)


def test_noisy_pressures_never_lose_a_bracketed_equilibrium():
    """Pressure noise can make the fitted B0' absurd or fail a fit; the equilibrium fit
    then fixes B0' instead of giving up (a bracketed zero is never NO_MINIMUM for it)."""
    errors = {}
    for noise in (0.005, 0.05):
        errors[noise] = []
        for seed in range(100):
            rng = np.random.default_rng(seed)
            a0 = rng.uniform(0.95, 1.05)
            found = search_zero_pressure(
                lambda s: _bm_pressure(s, a0, b0=10.0, bp=6.0) + rng.normal(0.0, noise))
            assert found.found
            b0, _, bp, fitted = fit_equilibrium_pressures(
                [16.0 * s ** 3 for s in found.window], [found.points[s] for s in found.window])
            assert not fitted or B_PRIME_RANGE[0] <= bp <= B_PRIME_RANGE[1]
            errors[noise].append(abs(b0 / 10.0 - 1.0))
    # at the pressure runs' threshold (about 0.005 GPa) a 10 GPa crystal's B0 within ~5 %
    assert np.percentile(errors[0.005], 95) < 0.06
    assert np.percentile(errors[0.05], 95) < 0.3


@pytest.mark.parametrize("pressure, why", [
    (lambda s: 5.0, "still positive (5 GPa) at the largest"),  # expands without end
    (lambda s: -5.0, "still negative (-5 GPa) at the smallest"),  # collapses
    (lambda s: _bm_pressure(s, 1.5), "at the largest"),  # zero beyond the range
    (lambda s: 3.0 * s, "at the largest"),  # P rises with V: no secant, largest moves
])
def test_no_zero_pressure_in_the_range(pressure, why):
    found = search_zero_pressure(pressure)
    assert not found.found and why in found.reason and found.window == []
    assert len(found.points) <= 12 and math.isnan(found.zero)


def test_a_small_run_budget_stops_the_zero_pressure_search():
    found = search_zero_pressure(lambda s: _bm_pressure(s, 1.28), max_runs=3)
    assert not found.found and "within 3 runs" in found.reason and len(found.points) == 3


# -- the recipes on a synthetic E(V) (no pw.x) -------------------------------------------------

def _fake_pw(monkeypatch, energy_of_volume, relaxed_cell=None):
    """Replace ``_run`` where the recipes look it up (``recipes``: the template scan and
    density; ``equilibrium``: the E(V) search and its vc-relax): each scf returns E(V); a
    vc-relax returns ``relaxed_cell``."""
    runs = []

    def fake_run(structure, settings, family, runner, options, log, label, reference=None,
                 handled=frozenset(), seeds=None, loosest_conv_thr=None):
        runs.append((label, settings.calculation, structure.volume))
        v, h = structure.volume, 1e-4 * structure.volume
        pressure = -(energy_of_volume(v + h) - energy_of_volume(v - h)) / (2 * h) / GPa
        parsed = PwOutput(total_energy=float(energy_of_volume(v)), pressure=float(pressure),
                          n_atoms=len(structure), job_done=True)
        if settings.calculation == "vc-relax":
            parsed.cell, parsed.relax_converged = relaxed_cell, True
        log.record(label, 1, Failure.OK, Status.OK, "", 0.1, 60.0, None, {})
        return _Attempt(Status.OK, "", parsed, 0.1, {}, settings)

    for module in (recipes, equilibrium):
        monkeypatch.setattr(module, "_run", fake_run)
    return runs


RUNNER = RunnerConfig(time_limit=60.0)


def test_relax_none_is_the_template_scan(monkeypatch):
    runs = _fake_pw(monkeypatch, lambda v: birch_murnaghan(v, 15.0))
    result = bulk_modulus(fcc(4.0), None, PRESET.settings, RUNNER, RecipeOptions())
    assert result.status == Status.OK
    assert [r[0] for r in runs] == [f"bulk-{s:.3f}" for s in RecipeOptions().pressure_scales]
    assert "relax" not in result.extra and result.extra["b_method"] in ("eos", "local")
    assert all(r[1] == "scf" for r in runs) and result.extra["eos_data"] == "pressure"


@pytest.mark.parametrize("search", ["pressure", "energy"])
def test_relax_volume_reports_b0_v0_and_the_relaxed_density(monkeypatch, search):
    template = fcc(4.0)
    v_eq = template.volume * 1.05 ** 3
    runs = _fake_pw(monkeypatch, lambda v: birch_murnaghan(v, v_eq))
    options = RecipeOptions(relax="volume", relax_search=search)
    modulus = bulk_modulus(template, None, PRESET.settings, RUNNER, options)
    assert modulus.status == Status.OK, modulus.reason
    assert modulus.value == pytest.approx(80.0, rel=1e-3)
    extra = modulus.extra
    assert extra["v0"] == pytest.approx(v_eq, rel=1e-4) and extra["relax"] == "volume"
    assert extra["lattice_factor"] == pytest.approx(1.05, rel=1e-4)
    assert len(runs) == len(extra["attempts"]) <= options.relax_max_runs
    assert all(calc == "scf" for _, calc, _ in runs)
    assert extra["energy_per_atom"] == pytest.approx(-10.0, abs=1e-4)  # E0 of the fake E(V)
    if search == "pressure":  # the zero-pressure search's runs read the stress, tighter
        assert extra["b_prime"] == pytest.approx(4.5, rel=0.02) and extra["b_prime_fitted"]
        assert extra["relax_search"] == "pressure" and len(extra["fit_pressures"]) >= 3
        assert all(r["changes"] == {} for r in extra["attempts"])
    rho = density(template, None, PRESET.settings, RUNNER, options)
    assert rho.status == Status.OK
    assert rho.value == pytest.approx(density_of(template) / 1.05 ** 3, rel=1e-4)
    assert rho.value == pytest.approx(extra["relaxed_density"])


@pytest.mark.parametrize("search", ["pressure", "energy"])
def test_relax_full_scans_around_the_vc_relaxed_cell(monkeypatch, search):
    template = fcc(4.0)
    relaxed = template.lattice.matrix * 1.04
    v_eq = template.volume * 1.05 ** 3
    runs = _fake_pw(monkeypatch, lambda v: birch_murnaghan(v, v_eq), relaxed_cell=relaxed)
    result = density(template, None, PRESET.settings, RUNNER,
                     RecipeOptions(relax="full", relax_search=search))
    assert result.status == Status.OK, result.reason
    assert runs[0][:2] == ("relax-vc", "vc-relax")
    assert result.extra["vc_relax_volume"] == pytest.approx(template.volume * 1.04 ** 3)
    centre = [volume for label, _, volume in runs if label == "eos-1.0000"]
    assert centre == [pytest.approx(template.volume * 1.04 ** 3)]  # the search's start
    assert result.extra["v0"] == pytest.approx(v_eq, rel=1e-4)
    assert result.value == pytest.approx(density_of(template) / 1.05 ** 3, rel=1e-4)


@pytest.mark.parametrize("search", ["pressure", "energy"])
@pytest.mark.parametrize("prop", [bulk_modulus, density])
def test_no_minimum_is_its_own_status_without_a_value(monkeypatch, prop, search):
    _fake_pw(monkeypatch, lambda v: -0.1 * v)  # E(V) falls: the crystal would expand
    result = prop(fcc(4.0), None, PRESET.settings, RUNNER,
                  RecipeOptions(relax="volume", relax_search=search))
    assert result.status == Status.NO_MINIMUM and math.isnan(result.value)
    assert "no e(v) minimum" in result.reason.lower() or "no minimum" in result.reason
    assert result.extra["attempts"]
    assert "b0" not in result.extra and result.extra["lattice_factors"][-1] == 1.3


# -- the status: cache and reward ----------------------------------------------------------------

def test_no_minimum_round_trips_the_cache(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    result = OracleResult(float("nan"), Status.NO_MINIMUM, "no minimum", 3.0, {"volumes": [1.0]})
    assert cache.put("k", "s", "bulk_modulus", result, time_limit=60.0)
    back = cache.get("k", "s", 60.0)
    assert back.status == Status.NO_MINIMUM and math.isnan(back.value)
    assert back.reason == "no minimum" and cache.totals()["by_status"] == {"NO_MINIMUM": 1}
    cache.close()


@pytest.mark.parametrize("name, floor_reward", [("bulk_modulus", -3.0), ("density", 0.0)])
def test_no_minimum_gets_the_floor_not_the_penalty(name, floor_reward):
    assert Status.NO_MINIMUM in FLOOR_STATUSES
    params = RewardParams(*(np.float32(x) for x in (300.0, 1.0, -3.0, -7.0)))
    prop = get_property(name)
    status = np.array([Status.NO_MINIMUM, Status.CRASH, Status.OK])
    reward = prop.reward(np.array([np.nan, np.nan, np.nan]), status, params, xp=np)
    # the floor is the lowest reward of a computed value (a Gaussian's is 0)
    np.testing.assert_allclose(reward, [floor_reward, -7.0, -7.0])
    assert prop.reward_bounds(params)[0] <= floor_reward


# -- real pw.x -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paw(tmp_path_factory):
    return write_gth_family(tmp_path_factory.mktemp("paw"), {"Al": PRESET.cutoffs["Al"]},
                            GTH_VARIANTS, generated={"Al": PSLIBRARY_INPUTS["Al"]},
                            name=PRESET.family)


#: fcc Al's lattice constant with the test preset (35 Ry, coarse k): about 4.025 Å
A_TEST = 4.025


@requires_pw
def test_relax_volume_finds_the_same_minimum_from_both_sides(paw, tmp_path):
    runner = RunnerConfig(time_limit=PRESET.time_limit, scratch_root=str(tmp_path))
    options = RecipeOptions(relax="volume")
    low, high = (bulk_modulus(fcc(A_TEST * f), paw, PRESET.settings, runner, options)
                 for f in (0.95, 1.05))
    for result in (low, high):
        assert result.status == Status.OK, result.reason
        assert len(result.extra["attempts"]) <= options.relax_max_runs
    # started 5 % compressed and 5 % expanded: the same V0 and B0
    assert low.extra["v0"] == pytest.approx(high.extra["v0"], rel=0.005)
    assert low.extra["lattice_factor"] == pytest.approx(1 / 0.95, rel=0.01)
    assert high.extra["lattice_factor"] == pytest.approx(1 / 1.05, rel=0.01)
    assert low.value == pytest.approx(high.value, rel=0.05)
    assert 50.0 < low.value < 120.0  # fcc Al: about 76 GPa converged PBE


@requires_pw
def test_the_zero_pressure_search_agrees_with_the_energy_search_in_fewer_runs(paw, tmp_path):
    runner = RunnerConfig(time_limit=PRESET.time_limit, scratch_root=str(tmp_path))
    template = fcc(A_TEST * 1.03)
    found = {data: bulk_modulus(template, paw, PRESET.settings, runner,
                                RecipeOptions(relax="volume", relax_search=data))
             for data in ("pressure", "energy")}
    for result in found.values():
        assert result.status == Status.OK, result.reason
    pressure, energy = found["pressure"], found["energy"]
    assert pressure.extra["v0"] == pytest.approx(energy.extra["v0"], rel=0.005)
    assert pressure.value == pytest.approx(energy.value, rel=0.03)
    assert pressure.extra["energy_per_atom"] == pytest.approx(
        energy.extra["energy_per_atom"], abs=0.01)  # eV
    assert len(pressure.extra["attempts"]) < len(energy.extra["attempts"])


@requires_pw
def test_relax_full_density_with_pw(paw, tmp_path):
    runner = RunnerConfig(time_limit=PRESET.time_limit, scratch_root=str(tmp_path))
    template = fcc(A_TEST * 0.95)
    result = density(template, paw, PRESET.settings, runner, RecipeOptions(relax="full"))
    assert result.status == Status.OK, result.reason
    extra = result.extra
    assert extra["vc_relax_volume"] == pytest.approx(extra["v0"], rel=0.01)
    assert result.value == pytest.approx(density_of(template) / (1 / 0.95) ** 3, rel=0.02)
    assert [a["run"] for a in extra["attempts"]][0] == "relax-vc"


def test_relaxation_positions_are_parsed():
    text = ("     number of atoms/cell      =            2\n"
            "ATOMIC_POSITIONS (crystal)\n"
            "Si            0.0100000000        0.0000000000       -0.0050000000\n"
            "Si            0.2600000000        0.2500000000        0.2450000000\n\n"
            "     bfgs converged in   3 scf cycles and   2 bfgs steps\n"
            "End final coordinates\n")
    out = parse_output(text)
    np.testing.assert_allclose(out.positions, [[0.01, 0.0, -0.005], [0.26, 0.25, 0.245]])
    assert out.relax_converged
    assert parse_output("JOB DONE").positions is None


def test_the_relaxed_properties_cache_key_says_how_the_minimum_was_found():
    from crystaljax.oracles.qe.oracle import recipe_key

    volume, energy = RecipeOptions(relax="volume"), RecipeOptions(relax="volume",
                                                                  relax_search="energy")
    for prop in ("bulk_modulus", "density"):
        # the zero-pressure search is marked: the same options found the E(V) minimum before
        assert recipe_key(volume, prop)["equilibrium_search"] == "pressure"
        assert recipe_key(volume, prop)["pressure_conv_factor"] == 0.01
        assert "equilibrium_search" not in recipe_key(energy, prop)
        assert "relax_search" not in recipe_key(energy, prop)  # keys as before it existed
        assert recipe_key(volume, prop) != recipe_key(energy, prop)
    # the E(V) search's density key is as before (no option it does not read)
    energy_density = recipe_key(energy, "density")
    assert not {"eos_data", "pressure_scales", "pressure_conv_factor"} & set(energy_density)
    assert recipe_key(RecipeOptions(relax="volume", relax_search="energy",
                                    pressure_scales=(0.9, 1.1)), "density") == energy_density
    # the band gap and the template scan read none of it
    assert recipe_key(volume, "band_gap") == recipe_key(energy, "band_gap")
    assert recipe_key(RecipeOptions(relax_search="energy"), "bulk_modulus") == \
        recipe_key(RecipeOptions(), "bulk_modulus")


def test_presets_with_capped_cutoffs_search_the_energy():
    """The zero of the pressure is the E(V) minimum only at converged cutoffs: ``fast``'s
    and ``test``'s carry Pulay pressures of GPa, so they search E(V); ``default`` the
    pressure (its cutoffs keep the volume error within about 1 %)."""
    assert get_preset("default").recipe.relax_search == "pressure"
    assert get_preset("fast").recipe.relax_search == "energy"
    assert get_preset("test").recipe.relax_search == "energy"
    with pytest.raises(ConfigError, match="relax_search must be one of"):
        RecipeOptions(relax_search="stress")
