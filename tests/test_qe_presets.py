"""Presets: the cutoffs are the ones the recorded convergence data give (per property where a
recipe reads less than the full rule converges); every preset covers the large vocabulary;
the default family is pslibrary's PAW sets, ``gth`` the earlier one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crystaljax.elements import LARGE
from crystaljax.oracles.qe.ld1 import ld1_input_path
from crystaljax.oracles.qe.presets import (
    COMPOUND_ECUTWFC_FLOOR,
    FAST_DUAL,
    FAST_ECUTWFC_CAP,
    GTH_ECUTWFC,
    LD1_INPUTS,
    PAW_BULK_MODULUS_DUAL_MEASURED,
    PAW_DUAL,
    PAW_DUAL_BY_PROPERTY,
    PAW_DUAL_KEPT,
    PAW_DUAL_OXIDE_MEASURED,
    PAW_ECUTWFC,
    PAW_ECUTWFC_BY_PROPERTY,
    PAW_ECUTWFC_ENERGY,
    PRESETS,
    PSLIBRARY_INPUTS,
    PSLIBRARY_SUGGESTED_INPUTS,
    Preset,
    get_preset,
    pseudo_variant,
)

ROOT = Path(__file__).resolve().parents[1]
GTH_DATA = ROOT / "benchmarks" / "cutoff_convergence.json"
PAW_DATA = ROOT / "benchmarks" / "cutoff_convergence_pslibrary.json"
PAW_PROPERTY_DATA = ROOT / "benchmarks" / "cutoff_convergence_pslibrary_equilibrium.json"
PAW_DUAL_DATA = ROOT / "benchmarks" / "cutoff_duals_pslibrary.json"
PAW_OXIDE_DUAL_DATA = ROOT / "benchmarks" / "cutoff_duals_pslibrary_oxides.json"


def test_every_preset_covers_the_large_vocabulary():
    for preset in PRESETS.values():
        assert set(preset.cutoffs) == set(LARGE)
        assert all(rho >= 4 * wfc for wfc, rho in preset.cutoffs.values())
        assert preset.family
    with pytest.raises(KeyError, match="unknown QE preset"):
        get_preset("nope")


def _check_recorded(path: Path, chosen: dict, generated: dict, dual: float) -> None:
    from crystaljax.benchmarks import cutoffs as converge

    data = json.loads(path.read_text())
    tol_mev, tol_gpa = data["method"]["tol_mev_per_atom"], data["method"]["tol_gpa"]
    assert data["method"]["ecutrho"] == f"{dual:g} x ecutwfc"
    assert set(data["elements"]) == set(LARGE)
    for element, entry in data["elements"].items():
        assert entry["variant"] == pseudo_variant(element, generated)
        cutoff, _rule = converge.recommend_cutoff(entry["rows"], tol_mev, tol_gpa)
        assert chosen[element] == cutoff, element


def test_default_cutoffs_follow_the_recorded_property_convergence_data():
    from crystaljax.benchmarks import cutoff_properties as props

    data = json.loads(PAW_PROPERTY_DATA.read_text())
    assert data["method"]["rule"] == "property"
    assert data["method"]["ecutrho"] == f"{PAW_DUAL:g} x ecutwfc"
    assert data["method"]["tolerances"] == props.PROPERTY_TOLERANCES
    assert set(data["elements"]) == set(LARGE)
    for element, entry in data["elements"].items():
        assert entry["variant"] == pseudo_variant(element, PSLIBRARY_INPUTS)
        assert entry["probe"] == "equilibrium" and entry["rows"], element  # at its minimum
        cutoff, _rule = props.recommend_property_cutoff(entry["rows"])
        floor = COMPOUND_ECUTWFC_FLOOR["density"].get(element, 0)
        assert PAW_ECUTWFC[element] == max(cutoff, floor), element
    duals = PAW_DUAL_BY_PROPERTY["density"]
    for element, cutoff in PAW_ECUTWFC.items():
        assert get_preset("default").cutoffs[element] == (cutoff, duals[element] * cutoff)


def test_per_property_cutoffs_follow_the_recorded_data_by_their_own_rule():
    from crystaljax.benchmarks import cutoff_properties as props

    elements = json.loads(PAW_PROPERTY_DATA.read_text())["elements"]
    default = get_preset("default")
    assert set(PAW_ECUTWFC_BY_PROPERTY) <= set(props.PROPERTY_RULES)
    for prop, table in PAW_ECUTWFC_BY_PROPERTY.items():
        for element, entry in elements.items():
            cutoff, rule = props.recommend_property_cutoff(entry["rows"],
                                                           props.PROPERTY_RULES[prop])
            cutoff = max(cutoff, COMPOUND_ECUTWFC_FLOOR.get(prop, {}).get(element, 0))
            assert (table[element], rule) == (cutoff, "property"), (prop, element)
            dual = PAW_DUAL_BY_PROPERTY.get(prop, {}).get(element, PAW_DUAL)
            assert default.cutoffs_for(prop)[element] == (cutoff, dual * cutoff)
    # a property without a table of its own (the density: its vc-relax reads the stress)
    # takes the full rule's cutoffs
    assert default.cutoffs_for("density") == default.cutoffs
    assert get_preset("gth").cutoffs_for("band_gap") == get_preset("gth").cutoffs


def test_default_duals_follow_the_recorded_dual_scans():
    """Each element's ecutrho / ecutwfc of the density and band-gap tables is the dual
    scan's choice, measured at the preset's ecutwfc of that property against the
    property-rule scans' references; the transition metals keep dual 8 (their bonds to O)
    but Ti and Zn (measured on their oxides), and the bulk modulus keeps dual 8 but for
    the elements its compounds allow at 4 (its E(V) noise; LiF and LiCl with the pressure
    scan; checked against the compound rows in the next test)."""
    from crystaljax.benchmarks import cutoff_duals
    from crystaljax.benchmarks.cutoff_properties import OXIDE_PROBE_ELEMENTS

    data = json.loads(PAW_DUAL_DATA.read_text())
    assert data["method"]["scans"] == "benchmarks/cutoff_convergence_pslibrary_equilibrium.json"
    assert data["method"]["scan_dual"] == PAW_DUAL
    assert set(data["elements"]) == set(LARGE)
    from pymatgen.core import Element

    from crystaljax.oracles.qe.inputs import MAGNETIC_ELEMENTS

    # the transition metals and La keep dual 8 (measured on MnO), but the 3d metals whose
    # oxide's dual scan allows their elemental duals (non-magnetic in the oracle, as on
    # the probe)
    kept, oxide_measured = set(PAW_DUAL_KEPT), set(PAW_DUAL_OXIDE_MEASURED)
    assert not kept & oxide_measured and set(OXIDE_PROBE_ELEMENTS) <= kept | oxide_measured
    assert {e for e in LARGE if Element(e).is_transition_metal or e == "La"} == (
        kept | oxide_measured)
    oxide = json.loads(PAW_OXIDE_DUAL_DATA.read_text())
    assert oxide["method"]["scans"] == "benchmarks/cutoff_convergence_pslibrary_oxides.json"
    for element in oxide_measured:
        assert element not in MAGNETIC_ELEMENTS
        for prop, choice in oxide["elements"][element]["choices"].items():
            table = PAW_ECUTWFC if prop == "density" else PAW_ECUTWFC_BY_PROPERTY[prop]
            assert choice["ecutwfc"] == table[element], (prop, element)
            if prop in PAW_DUAL_BY_PROPERTY:
                assert choice["dual"] <= PAW_DUAL_BY_PROPERTY[prop][element], (prop, element)
    tables = {"density": PAW_ECUTWFC, **PAW_ECUTWFC_BY_PROPERTY}
    measured = cutoff_duals.dual_tables([str(PAW_DUAL_DATA)])
    assert set(PAW_DUAL_BY_PROPERTY) == {"density", "band_gap", "bulk_modulus"}
    for prop in ("density", "band_gap"):
        assert PAW_DUAL_BY_PROPERTY[prop] == {e: PAW_DUAL if e in PAW_DUAL_KEPT else d
                                              for e, d in measured[prop].items()}, prop
    default = get_preset("default")
    for element, (wfc, rho) in default.cutoffs_for("bulk_modulus").items():
        dual = 4.0 if element in PAW_BULK_MODULUS_DUAL_MEASURED else PAW_DUAL
        assert rho == dual * wfc, element
    for element, result in data["elements"].items():
        assert set(result["choices"]) == set(tables)
        for prop, choice in result["choices"].items():
            assert choice["ecutwfc"] == tables[prop][element], (prop, element)
            rule = cutoff_duals.rule_of(prop)
            assert all(choice["deviations"][k] <= rule[k] for k in rule), (prop, element)
            if choice["dual"] < PAW_DUAL:  # measured: a row at that dual, every dual above
                duals = sorted({r["dual"] for r in result["rows"]
                                if r["ecutwfc"] == choice["ecutwfc"]}, reverse=True)
                assert duals[:duals.index(choice["dual"]) + 1] == [
                    d for d in cutoff_duals.DUAL_LADDER if d >= choice["dual"]]


def test_the_bulk_modulus_duals_follow_the_recorded_compound_checks():
    """Dual 4 for the bulk modulus exactly for the elements whose recorded rock-salt
    compounds (at least two) all keep their pressure-scan bulk modulus within 2 % at dual 4;
    Li's compounds do not, so the check tells a bad element from good ones."""
    from crystaljax.benchmarks.cutoff_duals import compound_bulk_modulus_duals

    rows = json.loads((ROOT / "benchmarks" / "compound_cutoffs.json").read_text())
    # only rows computed with the default family's pseudopotentials count
    generated = get_preset("default").generated
    family = {e: pseudo_variant(e, generated) for e in LARGE}
    checked = compound_bulk_modulus_duals(rows, pseudos=family)
    assert {e for e, r in checked.items() if r["passes"]} == set(PAW_BULK_MODULUS_DUAL_MEASURED)
    # every pressure-scan row records its pseudopotentials, and the filter matters: the rows
    # of the 1.0.0 O (default's O until 2026-12-05, later) pair up on their own
    assert all(r.get("pseudos") for r in rows
               if r["property"] == "bulk_modulus" and r.get("pressures_gpa"))
    earlier_o = compound_bulk_modulus_duals(rows, pseudos={
        **family, "O": pseudo_variant("O", PSLIBRARY_SUGGESTED_INPUTS)})
    assert earlier_o["O"]["compounds"].keys() == checked["O"]["compounds"].keys()
    assert earlier_o["O"]["compounds"] != checked["O"]["compounds"]
    assert not checked["Li"]["passes"] and len(checked["Li"]["compounds"]) >= 2
    assert all(d < -0.05 for d in checked["Li"]["compounds"].values())
    assert checked["Ti"]["compounds"].keys() >= {"TiN", "TiO", "TiC"}
    # the rule itself: one compound is not enough, a wider tolerance admits more
    one = compound_bulk_modulus_duals(rows, min_compounds=1)
    assert {e for e, r in one.items() if r["passes"]} > set(PAW_BULK_MODULUS_DUAL_MEASURED)
    assert compound_bulk_modulus_duals(rows, tolerance=0.2)["Li"]["passes"]


def test_the_compound_floors_follow_the_recorded_compound_checks():
    """Mg's band-gap and density floor (35 Ry): rock-salt MgS's gap at uniform cutoffs
    against the 80 Ry one; the floor is the lowest from which every checked cutoff is within
    the bands' 20 meV, and the probe's own choice (25) is not."""
    from crystaljax.benchmarks.cutoff_properties import PROPERTY_TOLERANCES

    rows = json.loads((ROOT / "benchmarks" / "compound_cutoffs.json").read_text())
    gap = {r["ecutwfc"]: r["value"] for r in rows if r["crystal"] == "MgS"
           and r["property"] == "band_gap" and r["preset"].startswith("default@")}
    tol_ev = PROPERTY_TOLERANCES["bands_mev"] / 1000.0
    reference = gap.pop(80.0)
    ok = [e for e in sorted(gap) if all(abs(gap[x] - reference) <= tol_ev
                                        for x in gap if x >= e)]
    assert min(ok) == COMPOUND_ECUTWFC_FLOOR["band_gap"]["Mg"] == 35
    assert COMPOUND_ECUTWFC_FLOOR["density"]["Mg"] == 35  # the full rule has the bands
    assert abs(gap[25.0] - reference) > tol_ev
    assert PAW_ECUTWFC["Mg"] == PAW_ECUTWFC_BY_PROPERTY["band_gap"]["Mg"] == 35
    assert PAW_ECUTWFC_BY_PROPERTY["bulk_modulus"]["Mg"] == 25


def test_a_per_property_table_must_cover_the_presets_elements():
    base = get_preset("test")
    with pytest.raises(ValueError, match=r"band_gap cutoffs .*missing \['Al'\]"):
        Preset("t", {"Al": (25.0, 200.0), "O": (40.0, 320.0)}, base.settings, base.recipe,
               60.0, property_cutoffs={"band_gap": {"O": (30.0, 240.0)}})
    with pytest.raises(ValueError, match=r"unknown properties \['bandgap'\]"):
        Preset("t", {"Al": (25.0, 200.0)}, base.settings, base.recipe, 60.0,
               property_cutoffs={"bandgap": {"Al": (20.0, 160.0)}})


@pytest.mark.skipif(shutil.which("ld1.x") is None, reason="needs ld1.x (make setup)")
def test_the_oracle_takes_its_propertys_cutoffs(tmp_path):
    from crystaljax.oracles.qe.oracle import QEOracle

    base = get_preset("test")
    preset = Preset("t", {"Al": (30.0, 240.0)}, base.settings, base.recipe, 60.0,
                    generated={"Al": PSLIBRARY_INPUTS["Al"]}, family="pslibrary-1.0.0-paw",
                    property_cutoffs={"band_gap": {"Al": (25.0, 200.0)}})
    hashes = {}
    for prop, expected in (("band_gap", (25.0, 200.0)), ("density", (30.0, 240.0))):
        with QEOracle(prop, preset=preset, cache=None, workers=1,
                      pseudo_dir=tmp_path / "pp") as oracle:
            assert oracle.family.cutoffs(["Al"]) == expected
            hashes[prop] = oracle.settings_hash
    other = Preset("u", {"Al": (30.0, 240.0)}, base.settings, base.recipe, 60.0,
                   generated={"Al": PSLIBRARY_INPUTS["Al"]}, family="pslibrary-1.0.0-paw")
    with QEOracle("band_gap", preset=other, cache=None, workers=1,
                  pseudo_dir=tmp_path / "pp") as oracle:
        assert oracle.settings_hash != hashes["band_gap"]  # the cutoffs are in the cache key


def test_energy_rule_cutoffs_follow_the_recorded_convergence_data():
    # the energy rule's table is the fast preset's, whose family keeps the semicore Mg,
    # and a new energy-rule scan runs on that family
    from crystaljax.benchmarks.cutoffs import family_inputs

    _check_recorded(PAW_DATA, PAW_ECUTWFC_ENERGY, PSLIBRARY_SUGGESTED_INPUTS, PAW_DUAL)
    assert family_inputs("pslibrary", "energy") == get_preset("fast").generated
    assert family_inputs("pslibrary") == get_preset("default").generated


def test_gth_cutoffs_follow_the_recorded_convergence_data():
    _check_recorded(GTH_DATA, GTH_ECUTWFC, LD1_INPUTS, 4.0)
    for element, cutoff in GTH_ECUTWFC.items():
        assert get_preset("gth").cutoffs[element] == (cutoff, 4.0 * cutoff)


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


def test_fast_preset_caps_the_energy_rule_cutoffs():
    # fast keeps the energy-rule table: its cutoffs are part of the cache key of the DFT
    # learning runs (benchmarks/dft_learning/), which must stay resumable with their cache
    fast, default = get_preset("fast"), get_preset("default")
    for element, (wfc, rho) in fast.cutoffs.items():
        assert wfc == min(PAW_ECUTWFC_ENERGY[element], FAST_ECUTWFC_CAP), element
        assert rho == FAST_DUAL * wfc
    assert fast.settings.kppa < default.settings.kppa
    # and its family (pslibrary's suggested Mg and O), which differs from the default's in
    # those two only
    assert fast.generated == PSLIBRARY_SUGGESTED_INPUTS
    assert {e for e in LARGE if fast.generated[e] != default.generated[e]} == {"Mg", "O"}


def test_families_of_the_presets():
    # default: one pslibrary PAW input per element, generated by ld1.x: the 1.0.0 sets but
    # for Mg (the valence-only 0.3.0 set) and O (0.1), SSSP Efficiency's; fast and test: the
    # same with the suggested semicore Mg and 1.0.0 O (their cache keys and the recorded
    # learning runs)
    assert get_preset("default").generated == PSLIBRARY_INPUTS
    assert get_preset("default").family == "pslibrary-paw-mg0.3-o0.1"
    for name in ("fast", "test"):
        assert get_preset(name).generated == PSLIBRARY_SUGGESTED_INPUTS
        assert get_preset(name).family == "pslibrary-1.0.0-paw"
    assert set(PSLIBRARY_INPUTS) == set(LARGE)
    for element, name in PSLIBRARY_INPUTS.items():
        version = {"Mg": "0.3.0", "O": "0.1"}.get(element, "1.0.0")
        assert name.startswith(f"pslibrary/{element}.pbe-") and name.endswith(
            f"_psl.{version}.in"), name
        assert ld1_input_path(name).is_file()
    assert PSLIBRARY_INPUTS["Mg"] == "pslibrary/Mg.pbe-n-kjpaw_psl.0.3.0.in"
    assert PSLIBRARY_INPUTS["O"] == "pslibrary/O.pbe-n-kjpaw_psl.0.1.in"
    assert PSLIBRARY_SUGGESTED_INPUTS == {
        **PSLIBRARY_INPUTS, "Mg": "pslibrary_suggested/Mg.pbe-spnl-kjpaw_psl.1.0.0.in",
        "O": "pslibrary_suggested/O.pbe-n-kjpaw_psl.1.0.0.in"}
    assert all(ld1_input_path(PSLIBRARY_SUGGESTED_INPUTS[e]).is_file() for e in ("Mg", "O"))
    # semicore shells where pslibrary's suggested list has them
    assert "spnl" in PSLIBRARY_INPUTS["Na"] and "spn" in PSLIBRARY_INPUTS["Ti"]
    # gth: the earlier default, GTH from cp2k-data with Na from ld1.x
    assert get_preset("gth").generated == LD1_INPUTS == {"Na": "Na.in"}
    assert pseudo_variant("Na") == "ld1:Na.in"
    assert pseudo_variant("O", PSLIBRARY_INPUTS) == f"ld1:{PSLIBRARY_INPUTS['O']}"
    assert pseudo_variant("O", LD1_INPUTS) == "GTH-PBE-q6"


def test_the_cutoff_table_script_prints_the_presets_tables():
    # scripts/cutoff_table.py on the recorded file gives exactly the preset's dicts
    from crystaljax.benchmarks.cutoffs import summary

    text = summary([str(PAW_PROPERTY_DATA)])
    tables = {line.split(" = ")[0]: json.loads(line.split(" = ", 1)[1])
              for line in text.splitlines() if " = {" in line}
    def raised(table, prop):  # the compound checks' floors on the probe's choices
        return {e: max(c, COMPOUND_ECUTWFC_FLOOR.get(prop, {}).get(e, 0))
                for e, c in table.items()}

    assert raised(tables["PAW_ECUTWFC"], "density") == PAW_ECUTWFC
    assert {p: raised(t, p) for p, t in tables["PAW_ECUTWFC_BY_PROPERTY"].items()} == \
        PAW_ECUTWFC_BY_PROPERTY
    # every floor raises a probe choice (none is a no-op)
    probe = {"density": tables["PAW_ECUTWFC"], **tables["PAW_ECUTWFC_BY_PROPERTY"]}
    assert all(floor > probe[p][e]
               for p, t in COMPOUND_ECUTWFC_FLOOR.items() for e, floor in t.items())
    from crystaljax.benchmarks import cutoff_duals

    text = cutoff_duals.summary([str(PAW_DUAL_DATA)])
    printed = json.loads(text.splitlines()[-1].split(" = ", 1)[1])
    elemental = ("density", "band_gap")  # the bulk modulus's duals come from compounds
    assert {p: {e: d for e, d in printed[p].items() if e not in PAW_DUAL_KEPT}
            for p in elemental} == {
        p: {e: d for e, d in PAW_DUAL_BY_PROPERTY[p].items() if e not in PAW_DUAL_KEPT}
        for p in elemental}


def test_a_density_read_from_e_of_v_takes_the_bulk_modulus_cutoffs():
    """``relax: volume`` / ``full`` read the density from the E(V) minimum: the bulk
    modulus's table (E(V) criteria, dual 8 but for the elements measured at 4), not the vc-relax's."""
    default = get_preset("default")
    assert default.cutoffs_for("density") == default.cutoffs
    for relax in ("volume", "full"):
        assert default.cutoffs_for("density", relax) == default.cutoffs_for("bulk_modulus")
    assert default.cutoffs_for("band_gap", "volume") == default.cutoffs_for("band_gap")
    gth = get_preset("gth")  # no per-property tables
    assert gth.cutoffs_for("density", "volume") == gth.cutoffs


def test_the_bulk_modulus_dual_check_pairs_rows_of_one_cutoff_and_keeps_the_worst():
    from crystaljax.benchmarks.cutoff_duals import compound_bulk_modulus_duals

    def row(crystal, ecut, rho, value, a=4.0, table="uniform", **extra):
        return {"crystal": crystal, "a": a, "property": "bulk_modulus", "status": "OK",
                "ecutwfc": ecut, "ecutrho": rho, "value": value, "pressures_gpa": [1.0, -1.0],
                "cutoff_table": table, **extra}

    rows = [row("TiN", 60, 480, 100.0), row("TiN", 60, 240, 90.0),  # worse, at another cutoff
            row("TiN", 50, 400, 100.0, table="preset"), row("TiN", 50, 200, 99.0),
            row("TiC", 50, 200, 99.5),  # no dual-8 reference: not counted
            row("TiO", 50, 400, 100.0), row("TiO", 50, 200, 101.0),
            row("TiO", 50, 200, 50.0, status="TIMEOUT"),  # failed rows are ignored
            row("TiO", 50, 200, 50.0, pressures_gpa=None)]  # an E(V) scan: ignored
    checked = compound_bulk_modulus_duals(rows)
    assert set(checked["Ti"]["compounds"]) == {"TiN", "TiO"}
    assert abs(checked["Ti"]["compounds"]["TiN"] + 0.10) < 1e-12
    assert abs(checked["O"]["compounds"]["TiO"] - 0.01) < 1e-12
    assert not checked["Ti"]["passes"] and not checked["N"]["passes"]  # N: one compound
    assert compound_bulk_modulus_duals(rows, tolerance=0.11, min_compounds=1)["N"]["passes"]
    assert "C" not in checked
    # rows of another pseudopotential do not count once the family is given
    recorded = {"Ti": "ld1:Ti.in", "N": "ld1:N.in", "C": "ld1:C.in", "O": "ld1:O-old.in"}
    for r in rows:
        r["pseudos"] = {e: recorded[e] for e in ("Ti", r["crystal"][2:])}
    ours = {**recorded, "O": "ld1:O-new.in"}
    assert set(compound_bulk_modulus_duals(rows, pseudos=ours)["Ti"]["compounds"]) == {"TiN"}
    del rows[0]["pseudos"]  # a row without the record does not count either
    assert "TiN" in compound_bulk_modulus_duals(rows, pseudos=ours)["Ti"]["compounds"]
    del rows[1]["pseudos"]
    assert compound_bulk_modulus_duals(rows, pseudos=ours)["Ti"]["compounds"]["TiN"] == \
        pytest.approx(-0.01)


def test_one_ld1_input_per_element_in_a_family_folder(tmp_path, monkeypatch):
    # a stale copy of a replaced set next to its successor must not pick one silently
    from crystaljax.oracles.qe import presets

    (tmp_path / "fam").mkdir()
    (tmp_path / "fam" / "O.pbe-n-kjpaw_psl.0.1.in").write_text("x")
    monkeypatch.setattr(presets, "LD1_INPUT_DIR", tmp_path)
    assert presets._inputs_in("fam") == {"O": "fam/O.pbe-n-kjpaw_psl.0.1.in"}
    (tmp_path / "fam" / "O.pbe-n-kjpaw_psl.1.0.0.in").write_text("y")
    with pytest.raises(RuntimeError, match="two ld1.x inputs for O"):
        presets._inputs_in("fam")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="no ld1.x inputs"):
        presets._inputs_in("empty")
