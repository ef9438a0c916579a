"""Property recipes with the real pw.x on tiny inputs (test preset: 25 Ry, coarse k)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.units import GPa
from pymatgen.core import Lattice, Structure
from qe_helpers import diamond, requires_pw, rocksalt

from crystaljax.oracles.base import Status
from crystaljax.oracles.qe.band_gap import METAL_OVERLAP_EV
from crystaljax.oracles.qe.family import write_gth_family
from crystaljax.oracles.qe.presets import GTH_VARIANTS, get_preset
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.recipes import (
    band_edges,
    band_gap,
    bulk_modulus,
    bulk_modulus_from_scan,
    density,
    density_of,
    fit_bulk_modulus,
    scaled,
)
from crystaljax.oracles.qe.runner import RunnerConfig

PRESET = get_preset("test")


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    return write_gth_family(tmp_path_factory.mktemp("pp"), PRESET.cutoffs, GTH_VARIANTS)


@pytest.fixture()
def runner(tmp_path):
    return RunnerConfig(time_limit=PRESET.time_limit, scratch_root=str(tmp_path))


def _birch_murnaghan(v, e0, b0, bp, v0):
    eta = (v0 / v) ** (2.0 / 3.0)
    return e0 + 9.0 * v0 * b0 / 16.0 * ((eta - 1) ** 3 * bp + (eta - 1) ** 2 * (6 - 4 * eta))


@pytest.mark.parametrize("lattice", ["fcc", "bcc", "hexagonal"])
def test_eos_fit_recovers_bulk_modulus_on_real_volumes(lattice):
    # E(V) is lattice-agnostic once expressed in real volumes: fcc, bcc and
    # hexagonal cells of the same per-cell volumes give the same B.
    v0 = {"fcc": 40.0, "bcc": 23.0, "hexagonal": 61.0}[lattice]
    b_ev = 155.0 * GPa
    volumes = v0 * np.array([0.98, 0.99, 1.0, 1.01, 1.02])
    energies = _birch_murnaghan(volumes, -100.0, b_ev, 4.2, v0 * 1.003)
    b, v, _ = fit_bulk_modulus(volumes, energies)
    assert b == pytest.approx(155.0, rel=1e-3)
    assert v == pytest.approx(v0 * 1.003, rel=1e-4)


def test_eos_fit_failure_is_a_value_error():
    with pytest.raises(ValueError):
        fit_bulk_modulus([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])


def test_band_edges_over_k():
    eig = np.array([[-5.0, 1.0, 3.0], [-4.0, 1.5, 2.5]])
    assert band_edges(eig, 4) == (1.5, 2.5)


def test_scaled_keeps_shape_and_fractions():
    s = Structure(Lattice.hexagonal(3.0, 5.0), ["Zn", "O"], [[0, 0, 0], [1 / 3, 2 / 3, 0.4]])
    t = scaled(s, 1.02)
    assert t.volume == pytest.approx(1.02 * s.volume)
    assert t.lattice.c / t.lattice.a == pytest.approx(s.lattice.c / s.lattice.a)
    assert np.allclose(t.frac_coords, s.frac_coords)


@requires_pw
def test_band_gap_of_an_insulator(family, runner, tmp_path):
    result = band_gap(rocksalt(5.69, "Na", "Cl"), family, PRESET.settings, runner)
    assert result.status == Status.OK, result.reason
    assert 3.0 < result.value < 7.0  # NaCl: wide gap even at 25 Ry
    assert result.extra["lumo"] - result.extra["homo"] == pytest.approx(result.value)
    # smearing first, then fixed occupations for the exact gap
    assert [a["run"] for a in result.extra["attempts"]] == ["gap-smear", "gap-fixed"]
    assert result.extra["energy_per_atom"] < 0 and result.seconds > 0
    assert not any(tmp_path.iterdir())  # scratch removed on success


@requires_pw
def test_band_gap_of_a_metal_is_zero(family, runner):
    # Al on both rock-salt sites (simple cubic, 2.5 Å apart): 6 electrons, a metal;
    # even electron count: the smeared run (the first) finds bands that overlap, so no
    # fixed-occupation run follows.
    result = band_gap(rocksalt(5.0, "Al", "Al"), family, PRESET.settings, runner)
    assert result.status == Status.OK, result.reason
    assert result.value == 0.0 and result.extra["metal"]
    assert result.extra["smeared_gap"] <= -METAL_OVERLAP_EV
    assert [a["run"] for a in result.extra["attempts"]] == ["gap-smear"]
    odd = band_gap(rocksalt(4.8, "Na", "Mg"), family, PRESET.settings, runner)
    assert odd.status == Status.OK and odd.value == 0.0 and odd.extra["odd_electrons"]


@requires_pw
def test_density_one_vc_relax_step(family, runner):
    nacl = rocksalt(5.69, "Na", "Cl")
    result = density(nacl, family, PRESET.settings, runner, PRESET.recipe)
    assert result.status == Status.OK, result.reason
    assert result.extra["cell_updated"]
    assert math.isfinite(result.value) and result.value != pytest.approx(density_of(nacl))
    assert result.value == pytest.approx(density_of(nacl), rel=0.3)  # one BFGS step
    assert result.value == pytest.approx(
        float(nacl.composition.weight) / result.extra["volume"] * 1.66053906660)


@requires_pw
def test_bulk_modulus_scan(family, runner):
    """Both scans on real pw.x: the default pressure scan (2 runs with the stress) and the
    energy scan (5 runs), the same crystal within 3 % of each other."""
    si = diamond(5.47)  # Si: 40 Ry and a 6x6x6 grid already give a physical B
    settings = PRESET.settings.replace(ecutwfc=40.0, ecutrho=160.0, kgrid=(6, 6, 6))
    by_energy = bulk_modulus(si, family, settings, runner, RecipeOptions(eos_data="energy"))
    assert by_energy.status == Status.OK, by_energy.reason
    assert np.allclose(by_energy.extra["volumes"],
                       si.volume * np.array(RecipeOptions().volume_scales))
    assert len(by_energy.extra["energies"]) == 5 and by_energy.extra["eos_data"] == "energy"
    assert 70.0 < by_energy.value < 110.0  # PBE: 89 GPa
    assert by_energy.extra["energy_per_atom"] == pytest.approx(by_energy.extra["energies"][2] / 2)
    by_pressure = bulk_modulus(si, family, settings, runner, PRESET.recipe)
    assert by_pressure.status == Status.OK, by_pressure.reason
    assert PRESET.recipe.eos_data == "pressure" and by_pressure.extra["b_method"] == "eos"
    assert len(by_pressure.extra["pressures"]) == 2 == len(by_pressure.extra["energies"])
    assert by_pressure.value == pytest.approx(by_energy.value, rel=0.03)
    # the template volume's energy, interpolated between 0.98 and 1.02 (eV/atom)
    assert by_pressure.extra["energy_per_atom"] == pytest.approx(
        by_energy.extra["energy_per_atom"], abs=2e-3)


def test_bulk_modulus_without_a_minimum_is_the_local_value():
    vt = 78.1
    volumes = vt * np.array([0.98, 0.99, 1.0, 1.01, 1.02])
    # under 48 GPa of pressure with B = 50 GPa at the template volume: no minimum nearby
    energies = -0.3 * (volumes - vt) + 50.0 * GPa / (2 * vt) * (volumes - vt) ** 2
    value, details = bulk_modulus_from_scan(volumes, energies, vt)
    assert details["b_method"] == "local" and details["eos_error"]
    assert value == pytest.approx(50.0, rel=1e-6) == details["b_local"]
    assert not details["mechanically_unstable"]
    linear = -0.5 * (volumes - vt)  # a fit may "succeed" with V0 far away: not trusted
    value, details = bulk_modulus_from_scan(volumes, linear, vt)
    assert details["b_method"] == "local" and abs(value) < 1e-6
    concave = -0.3 * (volumes - vt) - 20.0 * GPa / (2 * vt) * (volumes - vt) ** 2
    value, details = bulk_modulus_from_scan(volumes, concave, vt)
    assert details["b_method"] == "local" and value == pytest.approx(-20.0, rel=1e-6)
    assert details["mechanically_unstable"]


def test_bulk_modulus_near_equilibrium_is_the_eos_b0():
    v0 = 40.0
    volumes = v0 * 1.04 * np.array([0.98, 0.99, 1.0, 1.01, 1.02])  # minimum 4 % below
    energies = _birch_murnaghan(volumes, -10.0, 24.0 * GPa, 4.5, v0)
    value, details = bulk_modulus_from_scan(volumes, energies, v0 * 1.04)
    assert details["b_method"] == "eos" and not details["v0_in_range"]
    assert value == pytest.approx(24.0, rel=1e-3) and details["b_local"] < value
