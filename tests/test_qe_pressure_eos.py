"""The bulk modulus from pressures (``recipe.eos_data: pressure``): the P(V) fit, its
fall-backs and the recipe on a synthetic equation of state (no pw.x)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.units import GPa
from pymatgen.core import Lattice, Structure

from crystaljax.config import ConfigError
from crystaljax.oracles.base import Status
from crystaljax.oracles.qe import recipes
from crystaljax.oracles.qe.attempts import _Attempt
from crystaljax.oracles.qe.equation_of_state import (
    birch_murnaghan_pressure,
    bulk_modulus_from_pressures,
    energy_at_volume,
    fit_pressure_eos,
)
from crystaljax.oracles.qe.oracle import recipe_key
from crystaljax.oracles.qe.parse import PwOutput
from crystaljax.oracles.qe.presets import get_preset
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.restarts import Failure
from crystaljax.oracles.qe.runner import RunnerConfig

V0, B0, BP = 40.0, 150.0, 4.6  # Å^3, GPa, 1


def energy(v, e0=-100.0):
    """Third-order Birch-Murnaghan E(V) (eV) of V0, B0, BP."""
    eta = (V0 / np.asarray(v)) ** (2.0 / 3.0)
    return e0 + 9.0 * V0 * B0 * GPa / 16.0 * ((eta - 1) ** 3 * BP + (eta - 1) ** 2 * (6 - 4 * eta))


def test_the_pressure_is_minus_the_derivative_of_the_energy():
    v, h = np.array([36.0, 40.0, 44.0]), 1e-5
    numeric = -(energy(v + h) - energy(v - h)) / (2 * h) / GPa
    assert birch_murnaghan_pressure(v, V0, B0, BP) == pytest.approx(numeric, rel=1e-6)


def test_three_or_more_volumes_fit_b_prime_two_fix_it_at_four():
    volumes = V0 * 1.03 * np.array([0.98, 0.99, 1.0, 1.01, 1.02])
    b0, v0, bp = fit_pressure_eos(volumes, birch_murnaghan_pressure(volumes, V0, B0, BP))
    assert (b0, v0, bp) == pytest.approx((B0, V0, BP), rel=1e-5)
    two = volumes[[0, -1]]
    b0, v0, bp = fit_pressure_eos(two, birch_murnaghan_pressure(two, V0, B0, 4.0))
    assert (b0, v0, bp) == pytest.approx((B0, V0, 4.0), rel=1e-6)
    # with the true B0' = 4.6 the two-volume B0 is off by about (B0' - 4) x P
    pressures = birch_murnaghan_pressure(two, V0, B0, BP)
    b0, v0, bp = fit_pressure_eos(two, pressures)
    assert bp == 4.0 and abs(b0 / B0 - 1) < 0.03 and b0 != pytest.approx(B0, rel=1e-3)


def test_a_constant_pressure_offset_moves_v0_and_b0_by_b_prime_times_it():
    volumes = V0 * np.array([0.98, 1.02])
    pressures = birch_murnaghan_pressure(volumes, V0, B0, 4.0)
    b_shifted, v_shifted, _ = fit_pressure_eos(volumes, pressures + 1.0)  # a Pulay stress
    # read where the true pressure is -1 GPa: V0 + V0/B0, B0 - B0' x 1 GPa
    assert b_shifted == pytest.approx(B0 - 4.0, rel=2e-3)
    assert v_shifted == pytest.approx(V0 * (1 + 1.0 / B0), rel=1e-3)


def test_near_equilibrium_the_value_is_b0_far_from_it_the_local_value():
    vt = V0 * 1.01
    volumes = vt * np.array([0.98, 1.02])
    value, details = bulk_modulus_from_pressures(
        volumes, birch_murnaghan_pressure(volumes, V0, B0, 4.0), vt)
    assert details["b_method"] == "eos" and value == pytest.approx(B0, rel=1e-6)
    assert details["v0"] == pytest.approx(V0, rel=1e-6) and not details["b_prime_fitted"]
    assert details["b_local"] < B0  # B falls as the crystal expands
    vt = V0 * 1.5  # V0 far outside the trusted range: the modulus at the template volume
    volumes = vt * np.array([0.98, 1.02])
    pressures = birch_murnaghan_pressure(volumes, V0, B0, 4.0)
    value, details = bulk_modulus_from_pressures(volumes, pressures, vt)
    assert details["b_method"] == "local" and "more than 20%" in details["eos_error"]
    assert value == pytest.approx(-vt * (pressures[1] - pressures[0]) / (volumes[1] - volumes[0]))


def test_a_pressure_rising_with_volume_is_mechanically_unstable():
    volumes = [39.2, 40.8]
    value, details = bulk_modulus_from_pressures(volumes, [1.0, 2.0], 40.0)
    assert details["b_method"] == "local" and "rises with the volume" in details["eos_error"]
    assert value == pytest.approx(-40.0 * 1.0 / 1.6) and details["mechanically_unstable"]
    with pytest.raises(ValueError, match="two or more volumes"):
        fit_pressure_eos([40.0, 40.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        fit_pressure_eos([39.0, 41.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match="two or more different volumes"):
        bulk_modulus_from_pressures([40.0, 40.0], [1.0, 1.0], 40.0)


def test_a_fit_that_runs_into_a_bound_is_not_a_b0():
    # four pressures that bend the wrong way for any B0' in range: the fit would sit on
    # the B0' bound; the value is the local modulus instead
    volumes = np.array([39.0, 39.5, 40.0, 40.5])
    pressures = np.array([2.0, 0.2, -1.0, -1.6])
    with pytest.raises(ValueError, match="bound|did not converge"):
        fit_pressure_eos(volumes, pressures)
    value, details = bulk_modulus_from_pressures(volumes, pressures, 40.0)
    assert details["b_method"] == "local" and value > 0


def test_the_energy_at_the_template_volume_is_interpolated_by_the_pressure():
    volumes = np.array([0.98, 1.02]) * 41.0
    pressures = birch_murnaghan_pressure(volumes, V0, B0, BP)
    interpolated = energy_at_volume(volumes, energy(volumes), pressures, 41.0)
    assert interpolated == pytest.approx(float(energy(41.0)), abs=2e-5)  # eV
    outside = energy_at_volume(volumes, energy(volumes), pressures, 42.0)
    assert outside == pytest.approx(float(energy(42.0)), abs=2e-3)


def test_pressure_scales_are_checked_and_only_in_the_bulk_modulus_cache_key():
    assert RecipeOptions().scan_scales == (0.98, 1.02)
    assert RecipeOptions(eos_data="energy").scan_scales == RecipeOptions().volume_scales
    for scales in ((1.0, 1.0), (0.98, 1.0, 1.0)):
        with pytest.raises(ConfigError, match="at least 2 volume factors, all different"):
            RecipeOptions(pressure_scales=scales)
    with pytest.raises(ConfigError, match="eos_data must be one of"):
        RecipeOptions(eos_data="stress")
    assert "eos_data" in recipe_key(RecipeOptions(), "bulk_modulus")
    with pytest.raises(ConfigError, match="pressure_conv_factor must be <= 1"):
        RecipeOptions(pressure_conv_factor=2.0)
    other = RecipeOptions(eos_data="energy", pressure_scales=(0.97, 1.03),
                          pressure_conv_factor=0.5)
    assert recipe_key(other, "bulk_modulus") != recipe_key(RecipeOptions(), "bulk_modulus")
    for prop in ("band_gap", "density"):
        assert "eos_data" not in recipe_key(RecipeOptions(), prop)
        assert recipe_key(other, prop) == recipe_key(RecipeOptions(), prop)


def _fake_scan(monkeypatch, with_pressure=True):
    runs = []

    def fake_run(structure, settings, family, runner, options, log, label, reference=None,
                 handled=frozenset(), seeds=None, loosest_conv_thr=None):
        v = structure.volume
        runs.append((label, settings.stress, settings.conv_thr_per_atom))
        parsed = PwOutput(total_energy=float(energy(v)), n_atoms=len(structure), job_done=True,
                          pressure=float(birch_murnaghan_pressure(v, V0, B0, BP))
                          if with_pressure else None)
        log.record(label, 1, Failure.OK, Status.OK, "", 0.1, 60.0, None, {})
        return _Attempt(Status.OK, "", parsed, 0.1, {}, settings)

    monkeypatch.setattr(recipes, "_run", fake_run)
    return runs


def _cell(volume: float) -> Structure:
    a = volume ** (1 / 3)
    return Structure(Lattice.cubic(a), ["Al", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.mark.parametrize("eos_data, n_runs, tolerance", [("pressure", 2, 2e-3),
                                                          ("energy", 5, 1e-3)])
def test_both_scans_find_b0_of_a_crystal_near_equilibrium(monkeypatch, eos_data, n_runs,
                                                          tolerance):
    runs = _fake_scan(monkeypatch)
    preset = get_preset("test")
    result = recipes.bulk_modulus(_cell(V0 * 1.002), None, preset.settings,
                                  RunnerConfig(time_limit=60.0), RecipeOptions(eos_data=eos_data))
    assert result.status == Status.OK and result.extra["eos_data"] == eos_data
    assert result.value == pytest.approx(B0, rel=tolerance)
    assert len(runs) == n_runs and all(stress == (eos_data == "pressure") for _, stress, _ in runs)
    threshold = preset.settings.conv_thr_per_atom * (0.01 if eos_data == "pressure" else 1.0)
    assert all(conv == pytest.approx(threshold) for _, _, conv in runs)
    assert result.extra["energy_per_atom"] == pytest.approx(float(energy(V0 * 1.002)) / 2,
                                                            abs=1e-4)


def test_a_run_without_a_pressure_is_a_parse_error(monkeypatch):
    _fake_scan(monkeypatch, with_pressure=False)
    result = recipes.bulk_modulus(_cell(V0), None, get_preset("test").settings,
                                  RunnerConfig(time_limit=60.0), RecipeOptions())
    assert result.status == Status.PARSE_ERROR and "no pressure" in result.reason
    assert result.extra["volume_scale"] == 0.98


def test_the_comparison_fits_every_subset_of_the_same_runs():
    from crystaljax.benchmarks import eos_data

    vt = V0 * 1.005
    offset = 0.7  # GPa, a Pulay stress: in the pressures, not in the energies
    rows = [{"scale": s, "volume": vt * s, "energy": float(energy(vt * s)),
             "pressure": float(birch_murnaghan_pressure(vt * s, V0, B0, BP)) + offset}
            for s in eos_data.SCALES]
    fits = eos_data.fits(rows, vt)
    assert set(fits) == {*eos_data.FITS, "pulay_offset_gpa"}
    assert fits["pulay_offset_gpa"] == pytest.approx(offset, abs=0.05)
    assert fits["energy_5"]["value"] == pytest.approx(B0, rel=1e-3)
    # an offset d reads as the modulus where the true pressure is -d: B0 - B0' d
    assert fits["pressure_5"]["value"] == pytest.approx(B0 - BP * offset, rel=2e-3)
    assert fits["pressure_2"]["b_prime"] == 4.0 and fits["pressure_5"]["b_prime"] != 4.0
    table = eos_data.table({"crystals": {"MgO": {"fits": fits}}})
    assert table.splitlines()[-1].startswith("| MgO | 150.") and "| 155 |" in table
    two = eos_data.fits(rows[1:3], vt)  # 0.98 and 1.02 only
    assert set(two) == {"pressure_2"}
