"""Presets: the default cutoffs are the ones the recorded convergence data give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crystaljax.elements import LARGE
from crystaljax.oracles.qe.presets import (
    DEFAULT_ECUTWFC,
    FAST_GTH_FALLBACK,
    GTH_VARIANTS,
    LD1_INPUTS,
    PRESETS,
    get_preset,
    pseudo_variant,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "cutoff_convergence.json"


def test_every_preset_covers_the_large_vocabulary():
    for preset in PRESETS.values():
        assert set(preset.cutoffs) == set(LARGE)
        assert all(rho >= 4 * wfc for wfc, rho in preset.cutoffs.values())
    with pytest.raises(KeyError, match="unknown QE preset"):
        get_preset("nope")


@pytest.mark.skipif(not DATA.is_file(), reason="no recorded convergence data")
def test_default_cutoffs_follow_the_recorded_convergence_data():
    from crystaljax.benchmarks import cutoffs as converge
    data = json.loads(DATA.read_text())
    tol_mev, tol_gpa = data["method"]["tol_mev_per_atom"], data["method"]["tol_gpa"]
    assert set(data["elements"]) == set(LARGE)
    for element, entry in data["elements"].items():
        assert entry["variant"] == pseudo_variant(element)
        cutoff, _rule = converge.recommend_cutoff(entry["rows"], tol_mev, tol_gpa)
        assert DEFAULT_ECUTWFC[element] == cutoff, element
        assert get_preset("default").cutoffs[element] == (cutoff, 4.0 * cutoff)
    # the fast preset's GTH fall-backs (Na GTH-PBE-q1) have their own measured cutoffs
    for element, cutoff in FAST_GTH_FALLBACK.items():
        entry = data["gth_alternatives"][element]
        assert entry["variant"] == pseudo_variant(element, generated={})
        assert converge.recommend_cutoff(entry["rows"], tol_mev, tol_gpa)[0] == cutoff


def test_choose_cutoff_rules():
    from crystaljax.benchmarks import cutoffs as converge

    def rows(points):
        return [{"ecutwfc": c, "status": "OK", "energy_ev_per_atom": e, "pressure_gpa": p}
                for c, e, p in points]

    converged = rows([(30, -10.010, -1.0), (40, -10.002, -0.3), (60, -10.000, 0.0)])
    assert converge.choose_cutoff(converged, 5.0, 0.5) == 40
    # 60 >= 1.5 x 40 but not >= 1.5 x 50: 50 cannot be confirmed by the 60 Ry run
    short = rows([(50, -10.000, 0.0), (60, -10.000, 0.0)])
    assert converge.choose_cutoff(short, 5.0, 0.5) is None
    assert converge.recommend_cutoff(short, 5.0, 0.5) == (50, "relaxed")
    far = rows([(250, -10.2, -10.0), (300, -10.0, 0.0)])
    assert converge.recommend_cutoff(far, 5.0, 0.5) == (300, "top")


def test_fast_preset_caps_the_default_cutoffs():
    from crystaljax.oracles.qe.presets import FAST_ECUTWFC_CAP

    fast, default = get_preset("fast"), get_preset("default")
    for element, (wfc, rho) in fast.cutoffs.items():
        measured = FAST_GTH_FALLBACK.get(element, default.cutoffs[element][0])
        assert wfc == min(measured, FAST_ECUTWFC_CAP), element
        assert rho == 4 * wfc
    assert fast.settings.kppa < default.settings.kppa


def test_default_preset_generates_na_with_ld1_and_fast_keeps_the_gth_na():
    assert get_preset("default").generated == LD1_INPUTS == {"Na": "Na.in"}
    assert get_preset("test").generated == LD1_INPUTS
    assert "Na" not in get_preset("fast").generated and FAST_GTH_FALLBACK["Na"] == 30
    assert pseudo_variant("Na") == "ld1:Na.in"
    assert pseudo_variant("Na", get_preset("fast").generated) == GTH_VARIANTS["Na"] == "GTH-PBE-q1"
