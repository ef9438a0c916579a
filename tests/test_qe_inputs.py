"""pw.x input writing: cutoffs, bands, k-points, cell and positions."""

from __future__ import annotations

import pytest
from qe_helpers import rocksalt

from crystaljax.oracles.qe.family import MissingPseudopotential, write_gth_family
from crystaljax.oracles.qe.inputs import (
    PwSettings,
    kpoint_grid,
    number_of_bands,
    valence_electrons,
    write_pw_input,
)
from crystaljax.oracles.qe.presets import GTH_VARIANTS


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    return write_gth_family(
        tmp_path_factory.mktemp("pp"), {"Mg": (30, 120), "O": (60, 240)}, GTH_VARIANTS
    )


def test_bands_cover_occupied_plus_empty():
    assert number_of_bands(8, 4) == 8
    assert number_of_bands(9, 4) == 9
    assert number_of_bands(100, 4) == 60


def test_kpoint_density_grows_with_kppa():
    mgo = rocksalt(4.25, "Mg", "O")
    coarse, fine = kpoint_grid(mgo, 100), kpoint_grid(mgo, 1000)
    assert all(f > c for f, c in zip(fine, coarse))
    assert len(set(fine)) == 1  # cubic cell: equal divisions


def test_input_text(family):
    mgo = rocksalt(4.25, "Mg", "O")
    text = write_pw_input(mgo, PwSettings(kppa=1000), family)
    assert valence_electrons(mgo, family) == 8
    assert "ecutwfc = 60" in text and "ecutrho = 240" in text  # max over elements
    assert "nbnd = 8" in text and "occupations = 'fixed'" in text and "nspin = 1" in text
    assert "Mg 24.305000 Mg.gth" in text and "O 15.999400 O.gth" in text
    assert "CELL_PARAMETERS angstrom" in text and "ATOMIC_POSITIONS crystal" in text
    n = kpoint_grid(mgo, 1000)
    assert f"K_POINTS automatic\n  {n[0]} {n[1]} {n[2]} 0 0 0" in text
    relax = write_pw_input(mgo, PwSettings(calculation="vc-relax", nstep=3,
                                           occupations="smearing"), family)
    assert "nstep = 3" in relax and "&cell" in relax and "degauss = 0.001" in relax


def test_full_accuracy_of_empty_bands_is_asked_for_only_when_set(family):
    mgo = rocksalt(4.25, "Mg", "O")
    assert "diago_full_acc" not in write_pw_input(mgo, PwSettings(), family)
    text = write_pw_input(mgo, PwSettings(full_accuracy_empty_bands=True), family)
    assert "diago_full_acc = .true." in text


def test_missing_element_raises(family):
    with pytest.raises(MissingPseudopotential):
        write_pw_input(rocksalt(4.0, "Na", "O"), PwSettings(), family)


def test_settings_added_later_keep_older_cache_keys():
    """A PwSettings field added after results were cached enters the QE cache key only when
    it is set, so results cached before it (and runs that continue) keep their key."""
    import dataclasses

    from crystaljax.oracles.qe.oracle import SETTINGS_ADDED_LATER, settings_key

    default = settings_key(PwSettings())
    assert not set(SETTINGS_ADDED_LATER) & set(default)
    assert default == {k: v for k, v in dataclasses.asdict(PwSettings()).items()
                       if k not in SETTINGS_ADDED_LATER}
    assert settings_key(PwSettings(full_accuracy_empty_bands=True))["full_accuracy_empty_bands"]


def test_stress_is_computed_where_it_is_read(family):
    """An scf computes stress and forces unless told not to (the band-gap and bulk-modulus
    recipes' runs); a vc-relax always does, whatever the setting."""
    from crystaljax.oracles.qe.attempts import _smeared
    from crystaljax.oracles.qe.recipe_options import RecipeOptions

    mgo = rocksalt(4.25, "Mg", "O")
    assert "tstress = .true." in write_pw_input(mgo, PwSettings(), family)
    scf = write_pw_input(mgo, PwSettings(stress=False), family)
    assert "tstress = .false." in scf and "tprnfor = .false." in scf
    recipe_scf = _smeared(PwSettings(), RecipeOptions())
    assert not recipe_scf.stress
    relax = write_pw_input(mgo, recipe_scf.replace(calculation="vc-relax"), family)
    assert "tstress = .true." in relax and "tprnfor = .true." in relax


def test_stress_is_the_recipes_to_set():
    from crystaljax.config import ConfigError
    from crystaljax.oracles.qe.options import check_settings

    with pytest.raises(ConfigError, match="stress"):
        check_settings({"stress": False})
