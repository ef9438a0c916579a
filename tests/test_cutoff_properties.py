"""The property rule of cutoff convergence (crystaljax.benchmarks.cutoff_properties): its
deviations and choice on made-up rows, the per-property rules, and real scans of Al with
pw.x (three cells per cutoff; a recorded two-cell scan completed with the third)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from crystaljax.benchmarks import cutoff_properties as props


def _row(ecut, p0, p1, bands, status="OK"):
    return {"ecutwfc": ecut, "status": status, "seconds": 1.0, "volume_v0": 20.0,
            "volume_v1": 18.0,
            "pressure_v0": p0, "pressure_v1": p1, "bands_ev": bands}


def test_deviations_are_volume_bulk_modulus_and_band_errors():
    ref = _row(60, 10.0, 14.0, [[-5.0, -1.0, 2.0, 8.0]])
    row = _row(40, 10.5, 14.3, [[-5.01, -1.0, 2.003, 9.0]])
    dev = props.property_deviations(row, ref)
    b_ref = -4.0 / math.log(18.0 / 20.0)  # 37.97 GPa
    assert dev["volume"] == pytest.approx(0.5 / b_ref)
    # B error 0.2 GPa / |ln 0.9| = 1.9 GPa, relative to the floor (50 GPa > B = 38 GPa)
    assert dev["bulk_modulus"] == pytest.approx(0.2 / -math.log(0.9) / 50.0)
    stiff = props.property_deviations(_row(40, 10.0, 24.0, ref["bands_ev"]),
                                      _row(60, 10.0, 25.0, ref["bands_ev"]))
    assert stiff["bulk_modulus"] == pytest.approx(1.0 / 15.0)  # B = 142 GPa: relative to it
    # 8 eV is outside the window (Fermi level + 5 eV): its 1 eV change does not count
    assert dev["bands_mev"] == pytest.approx(10.0)
    other_bands = _row(40, 10.0, 14.0, [[-5.0, -1.0, 2.0]])
    assert props.property_deviations(other_bands, ref)["bands_mev"] == math.inf
    # the highest computed band does not count, even inside the window (ill-defined where
    # the band count cuts a degenerate multiplet)
    top = props.property_deviations(_row(40, 10.0, 14.0, [[-5.0, -1.0, 2.0, 4.0]]),
                                     _row(60, 10.0, 14.0, [[-5.0, -1.0, 2.0, 3.0]]))
    assert top["bands_mev"] == 0.0


def test_choice_needs_every_cutoff_up_to_a_reference_one_and_a_half_times_higher():
    bands = [[-3.0, 1.0, 4.0]]
    rows = [_row(25, 9.0, 13.0, bands), _row(30, 10.05, 14.0, bands),
            _row(40, 10.0, 14.0, bands), _row(45, 10.0, 14.0, bands)]
    # 25 Ry: pressure off by 1 GPa of B = 38 GPa (2.6 % in volume); 30 Ry is confirmed by 45
    assert props.choose_property_cutoff(rows) == 30
    assert props.recommend_property_cutoff(rows) == (30, "property")
    # a failed run between the candidate and the reference breaks the chain
    broken = rows[:2] + [_row(40, math.nan, math.nan, bands, status="TIMEOUT")] + rows[3:]
    assert props.choose_property_cutoff(broken) is None
    assert props.recommend_property_cutoff(broken) == (45, "top")
    bad_bands = rows[:3] + [_row(45, 10.0, 14.0, [[-3.0, 1.05, 4.0]])]
    assert props.choose_property_cutoff(bad_bands) is None  # 50 meV band change


def _energy_row(ecut, v_min, b_gpa, p0=0.0, status="OK", v0=20.0):
    """A row whose three cells lie on E(V) = B / (2 V0) (V - v_min)^2 (eV, Å^3, GPa)."""
    curvature = b_gpa / props.EV_PER_A3_GPA / v0

    def energy(v):
        return -5.0 + 0.5 * curvature * (v - v_min) ** 2

    row = _row(ecut, p0, p0 + 3.0, [[-3.0, 1.0, 4.0]], status)
    volumes = {"v0": v0, "v1": v0 * props.PROPERTY_STRAIN**3, "v2": v0 * props.ENERGY_STRAIN**3}
    for tag, v in volumes.items():
        row[f"volume_{tag}"], row[f"energy_{tag}"] = v, energy(v)
    return row


def test_energy_criteria_read_the_parabola_through_the_three_cells():
    ref = _energy_row(60, 20.1, 80.0)
    assert props.energy_curve(ref) == pytest.approx((20.1, 80.0))
    dev = props.energy_deviations(_energy_row(40, 20.3, 78.0), ref)
    assert dev["energy_volume"] == pytest.approx(0.2 / 20.0)  # of the reference's V0
    assert dev["energy_bulk_modulus"] == pytest.approx(2.0 / 80.0)
    soft = props.energy_deviations(_energy_row(40, 20.1, 11.0), _energy_row(60, 20.1, 10.0))
    assert soft["energy_bulk_modulus"] == pytest.approx(1.0 / props.BULK_MODULUS_FLOOR_GPA)
    two_cells = {k: v for k, v in ref.items() if not k.endswith("_v2")}
    assert props.energy_deviations(two_cells, ref) == {"energy_volume": math.inf,
                                                       "energy_bulk_modulus": math.inf}
    assert set(props.property_deviations(ref, ref)) == {
        "volume", "bulk_modulus", "bands_mev", "energy_volume", "energy_bulk_modulus"}


def test_each_property_is_converged_on_what_its_recipe_reads():
    bulk, gap = props.PROPERTY_RULES["bulk_modulus"], props.PROPERTY_RULES["band_gap"]
    assert set(props.PROPERTY_RULES) == {"band_gap", "bulk_modulus"}
    # 30 Ry: a band 50 meV off, stress and E(V) converged: the bulk modulus takes 30, the
    # full rule (the density's) and the band gap's keep 40
    rows = [_energy_row(25, 21.0, 80.0), _energy_row(30, 20.1, 80.5),
            _energy_row(40, 20.1, 80.0), _energy_row(60, 20.1, 80.0)]
    rows[1]["bands_ev"] = [[-3.0, 1.05, 4.0]]
    assert props.choose_property_cutoff(rows) == 40
    assert props.choose_property_cutoff(rows, bulk) == 30
    assert props.choose_property_cutoff(rows, gap) == 40
    # 30 Ry: the stress 2 GPa off (5 % in volume at B = 38 GPa): the bulk modulus keeps
    # 40 too (the stress sees a semicore shell the elemental E(V) misses); the gap takes 25
    stressed = [_energy_row(25, 21.0, 80.0), _energy_row(30, 20.1, 80.5, p0=2.0),
                _energy_row(40, 20.1, 80.0), _energy_row(60, 20.1, 80.0)]
    assert props.choose_property_cutoff(stressed, bulk) == 40
    assert props.choose_property_cutoff(stressed, gap) == 25
    # 30 Ry: E(V) 4 % stiffer, the stress converged: only the bulk modulus needs 40
    stiff = [_energy_row(25, 21.0, 80.0, p0=5.0), _energy_row(30, 20.1, 83.2),
             _energy_row(40, 20.1, 80.0), _energy_row(60, 20.1, 80.0)]
    assert props.choose_property_cutoff(stiff) == 30
    assert props.choose_property_cutoff(stiff, bulk) == 40
    # a scan recorded with two cells confirms nothing for the bulk modulus
    two_cells = [{k: v for k, v in r.items() if not k.endswith("_v2")} for r in stiff]
    assert props.choose_property_cutoff(two_cells) == 30
    assert props.choose_property_cutoff(two_cells, bulk) is None


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="needs pw.x (make setup)")
def test_a_two_cell_scan_is_completed_with_the_same_third_cell_and_extended(tmp_path):
    """Real pw.x: removing the third cell from a scan's rows and adding it back with
    ``add_energy_cell`` gives the same energies (same cell, same settings); a scan that
    confirms nothing yet is continued up the ladder until every rule finds a cutoff."""
    from crystaljax.benchmarks.cutoffs import family_inputs
    from crystaljax.oracles.qe.runner import RunnerConfig

    runner = RunnerConfig(time_limit=120.0)
    result = props.scan_element_properties("Al", (25, 30), tmp_path / "pseudos", runner,
                                           family_inputs("pslibrary"), dual=8.0)
    assert props.choose_property_cutoff(result["rows"]) is None  # 30 < 1.5 x 25
    recorded = [r["energy_v2"] for r in result["rows"]]
    for row in result["rows"]:
        for key in ("volume_v2", "energy_v2", "pressure_v2"):
            del row[key]
    runs = props.add_energy_cell(result, tmp_path / "pseudos", runner,
                                 family_inputs("pslibrary"), 8.0)
    assert runs == 2
    assert [r["energy_v2"] for r in result["rows"]] == pytest.approx(recorded, abs=1e-6)
    assert props.add_energy_cell(result, tmp_path / "pseudos", runner,
                                 family_inputs("pslibrary"), 8.0) == 0  # nothing left to add
    ladder = (25, 30, 40, 45)
    added = props.extend_scan(result, ladder, tmp_path / "pseudos", runner,
                              family_inputs("pslibrary"), 8.0)
    rows = result["rows"]
    assert added >= 1 and [r["ecutwfc"] for r in rows] == list(ladder[:2 + added])
    assert rows[-1]["volume_v0"] == rows[0]["volume_v0"] and "energy_v2" in rows[-1]
    rules = (props.PROPERTY_TOLERANCES, *props.PROPERTY_RULES.values())
    # it stopped where every rule has its cutoff (or at the ladder's end)
    chosen = [props.choose_property_cutoff(rows, rule) for rule in rules]
    assert all(c in (25, 30) for c in chosen) or added == 2
    assert added == 2 or any(props.choose_property_cutoff(rows[:-1], rule) is None
                             for rule in rules)
    assert props.extend_scan(result, ladder, tmp_path / "pseudos", runner,
                             family_inputs("pslibrary"), 8.0) == 0


def test_adding_the_third_cell_needs_a_property_rule_file_and_its_elements(tmp_path):
    import json

    from crystaljax.benchmarks.cutoffs import add_energy_cells

    energy_rule = tmp_path / "energy.json"
    energy_rule.write_text(json.dumps({"method": {"rule": "energy"}, "elements": {}}))
    with pytest.raises(ValueError, match="not a property-rule scan"):
        add_energy_cells(str(energy_rule))
    scan = tmp_path / "scan.json"
    scan.write_text(json.dumps({"method": {"rule": "property", "family": "pslibrary"},
                                "elements": {"Al": {}}}))
    with pytest.raises(ValueError, match=r"no scan of \['Xx'\]"):
        add_energy_cells(str(scan), ["Xx"])
    # the third cell must use the scan's own family (dual, pseudopotentials)
    with pytest.raises(ValueError, match="scanned with family 'pslibrary'; asked for 'gth'"):
        add_energy_cells(str(scan), ["Al"], family="gth")


def _fake_runs(monkeypatch, fail):
    """pw.x replaced: ``fail(label)`` says whether a run fails; energies on E = (V - 20)^2."""
    from types import SimpleNamespace

    labels = []

    def run_cell(cell, settings, family, runner, label):
        labels.append(label)
        if fail(label):
            return "TIMEOUT", "time limit", SimpleNamespace(energy_per_atom=None,
                                                            pressure=None), 1.0
        energy = -5.0 + 0.01 * (cell.volume - 20.0) ** 2
        pressure = 10.0 * (20.0 - cell.volume)  # GPa
        return "OK", "", SimpleNamespace(energy_per_atom=energy, pressure=pressure, fermi=0.0,
                                         eigenvalues=np.zeros((1, 3))), 1.0

    monkeypatch.setattr(props, "run_cell", run_cell)
    monkeypatch.setattr(props, "element_family", lambda *args: None)
    return labels


def test_a_failed_third_cell_keeps_the_rows_other_numbers_and_is_tried_again(monkeypatch):
    attempts = []
    _fake_runs(monkeypatch, lambda label: attempts.append(label) or len(attempts) == 1)
    row = {k: v for k, v in _energy_row(40, 20.1, 80.0).items() if not k.endswith("_v2")}
    record = {"element": "Al", "rows": [row]}
    assert props.add_energy_cell(record, None, None, {}, 8.0) == 1
    assert row["status"] == "OK" and row["energy_v2"] is None
    assert (row["status_v2"], row["reason_v2"]) == ("TIMEOUT", "time limit")
    dev = props.property_deviations(row, row)  # the stress and bands still count
    assert dev["volume"] == 0.0 and dev["bands_mev"] == 0.0 and dev["energy_volume"] == math.inf
    assert props.add_energy_cell(record, None, None, {}, 8.0) == 1  # tried again
    assert row["status_v2"] == "OK" and row["energy_v2"] is not None
    assert row["volume_v2"] == pytest.approx(20.0 * 1.02**3)


def test_extending_a_scan_stops_where_it_must(monkeypatch):
    converged = [_energy_row(c, 20.1, 80.0) for c in (25, 30, 40)]
    ladder = (25, 30, 40, 45, 50, 60)

    def refuse(*args):
        raise AssertionError("nothing should run")

    monkeypatch.setattr(props, "element_family", refuse)
    # every rule met, a failed last row, the ladder's end: nothing to run
    assert props.extend_scan({"element": "Al", "rows": converged}, ladder, None, None, {},
                             8.0) == 0
    failed = [*converged[:2], _energy_row(40, 20.1, 80.0, status="TIMEOUT")]
    assert props.extend_scan({"element": "Al", "rows": failed}, ladder, None, None, {}, 8.0) == 0
    short = converged[:2]
    assert props.extend_scan({"element": "Al", "rows": short}, (25, 30), None, None, {},
                             8.0) == 0
    # a run that fails on the way up stops the extension there
    labels = _fake_runs(monkeypatch, lambda label: label.endswith("-45-v0"))
    record = {"element": "Al", "rows": [_energy_row(25, 21.0, 80.0), _energy_row(30, 20.1, 80.0)]}
    assert props.extend_scan(record, ladder, None, None, {}, 8.0) == 2
    assert [r["ecutwfc"] for r in record["rows"]] == [25, 30, 40, 45]
    assert record["rows"][-1]["status"] == "TIMEOUT" and labels[-1].endswith("-45-v0")


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="needs pw.x (make setup)")
def test_two_volume_scan_of_aluminium_with_pw(tmp_path):
    """Real pw.x: Al's PAW set at 25, 30, ... Ry; pressures rise on compression, the bands
    are recorded relative to the Fermi level, and a cutoff is confirmed by 40 Ry or more."""
    from crystaljax.benchmarks.cutoffs import family_inputs
    from crystaljax.oracles.qe.runner import RunnerConfig

    result = props.scan_element_properties(
        "Al", (25, 30, 40, 45), tmp_path / "pseudos", RunnerConfig(time_limit=120.0),
        family_inputs("pslibrary"), dual=8.0)
    rows = result["rows"]
    assert all(r["status"] == "OK" for r in rows), rows
    assert all(r["pressure_v1"] > r["pressure_v0"] for r in rows)  # compressed cell
    assert all(r["volume_v1"] == pytest.approx(r["volume_v0"] * 0.98**3) for r in rows)
    assert all(r["volume_v2"] == pytest.approx(r["volume_v0"] * 1.02**3) for r in rows)
    assert all(r["pressure_v2"] < r["pressure_v0"] for r in rows)  # expanded cell
    # the contact cell is compressed (nn 2.5 Å, equilibrium 2.86): E(V) through the three
    # cells curves upwards and has its minimum at a larger volume
    assert all(props.energy_curve(r)[1] > 0 and props.energy_curve(r)[0] > r["volume_v0"]
               for r in rows)
    for rule in props.PROPERTY_RULES.values():
        assert props.choose_property_cutoff(rows, rule) is not None
    first = rows[0]["bands_ev"]
    assert len(first) > 1 and min(min(k) for k in first) < 0 < max(max(k) for k in first)
    chosen = props.choose_property_cutoff(rows)
    assert chosen is not None and rows[-1]["ecutwfc"] >= 1.5 * chosen
    assert result["variant"].startswith("ld1:pslibrary/Al.")


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="needs pw.x (make setup)")
def test_the_equilibrium_probe_is_the_fcc_cells_energy_minimum(tmp_path, monkeypatch):
    """Real pw.x: the ``equilibrium`` probe moves fcc Al from the contact cell (nn = 2 r_atomic,
    2.5 Å) to its own E(V) minimum (PBE: a = 4.04 Å; 4.0-4.1 at 30 Ry and a 6x6x6 grid),
    then scans there."""
    from crystaljax.benchmarks.cutoffs import family_inputs, fcc_cell
    from crystaljax.oracles.qe.runner import RunnerConfig

    monkeypatch.setattr(props, "EQUILIBRIUM_ECUT", 30.0)
    result = props.scan_element_properties(
        "Al", (25, 30, 40), tmp_path / "pseudos", RunnerConfig(time_limit=120.0),
        family_inputs("pslibrary"), dual=8.0, probe="equilibrium")
    assert result["probe"] == "equilibrium" and 3.95 < result["fcc_a"] < 4.15
    search = result["probe_search"]
    contact_a = fcc_cell("Al").lattice.a * 2**0.5
    assert search["lattice_factor"] == pytest.approx(result["fcc_a"] / contact_a, rel=1e-3)
    assert 40.0 < search["b0_gpa"] < 110.0 and len(result["rows"]) == 3
    # at equilibrium the pressure is near zero (at the search's cutoff and smearing)
    assert abs(result["rows"][1]["pressure_v0"]) < 2.0


def test_an_equilibrium_probe_without_a_minimum_scans_nothing(tmp_path, monkeypatch):
    from crystaljax.benchmarks import cutoffs
    from crystaljax.oracles.qe.runner import RunnerConfig

    monkeypatch.setattr(props, "element_family", lambda *args: FakeFamily())
    monkeypatch.setattr(props, "equilibrium_cell",
                        lambda *args: (None, {"status": "NO_MINIMUM", "reason": "E(V) falls"}))
    result = props.scan_element_properties("Al", (25, 30), tmp_path, RunnerConfig(), {"Al": "x"},
                                           8.0, probe="equilibrium")
    assert result["rows"] == [] and result["probe_error"] == "E(V) falls"
    lines, chosen = cutoffs._property_table({"Al": result})
    assert "E(V) falls" in lines[0] and chosen == {}
    with pytest.raises(ValueError, match="probe"):
        props.scan_element_properties("Al", (25,), tmp_path, RunnerConfig(), {}, 8.0,
                                      probe="nearby")


class FakeFamily:
    def spec(self, element):
        return type("Spec", (), {"z_valence": 3.0})()


def test_the_equilibrium_probe_needs_the_property_rule(tmp_path):
    from crystaljax.benchmarks.cutoffs import converge

    with pytest.raises(ValueError, match="property"):
        converge(str(tmp_path / "out.json"), ["Al"], rule="energy", probe="equilibrium")


def test_the_oxide_probe_cell_and_per_atom_energies():
    from pymatgen.core import Element

    cell = props.oxide_cell("Mn")
    assert [s.specie.symbol for s in cell] == ["Mn", "O"]
    nn = float(Element("Mn").atomic_radius + Element("O").atomic_radius)
    assert cell.get_distance(0, 1) == pytest.approx(nn)
    assert props.probe_start("Mn", "oxide") == cell
    assert len(props.probe_start("Mn", "equilibrium")) == 1
    assert set(props.OXIDE_PROBE_ELEMENTS) == {"Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
                                               "Zn"}
    # a two-atom row: volumes per cell, energies per atom -> the same curve per atom
    one = _energy_row(40, 20.1, 80.0)
    two = {**one, "atoms": 2, **{f"volume_{t}": 2 * one[f"volume_{t}"] for t in ("v0", "v1",
                                                                             "v2")}}
    assert props.energy_curve(two) == pytest.approx(props.energy_curve(one))
    shifted = {**two, "energy_v1": two["energy_v1"] + 1e-3}
    assert props.energy_deviations(shifted, two)["energy_volume"] == pytest.approx(
        props.energy_deviations({**one, "energy_v1": one["energy_v1"] + 1e-3}, one)[
            "energy_volume"])


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="needs pw.x (make setup)")
def test_the_oxide_probe_scans_the_rock_salt_oxide_at_its_minimum(tmp_path, monkeypatch):
    """Real pw.x: the ``oxide`` probe finds rock-salt MgO's E(V) minimum (PBE a = 4.25 Å;
    here at 35 Ry, where O is not converged) and scans the two-atom cell. Not at 25 Ry:
    there, far below O's 45, MgO's SCF does not converge in 300 iterations."""
    from crystaljax.benchmarks.cutoffs import family_inputs
    from crystaljax.oracles.qe.runner import RunnerConfig

    monkeypatch.setattr(props, "EQUILIBRIUM_ECUT", 35.0)
    result = props.scan_element_properties(
        "Mg", (30, 35), tmp_path / "pseudos", RunnerConfig(time_limit=120.0),
        family_inputs("pslibrary"), dual=8.0, probe="oxide")
    assert result["probe"] == "oxide" and "probe_error" not in result, result
    # which O the oxide was computed with (the family's), recorded with the metal's set
    assert result["partner_variants"] == {"O": f"ld1:{family_inputs('pslibrary')['O']}"}
    assert 3.9 < result["fcc_a"] < 4.6 and result["probe_search"]["b0_gpa"] > 50.0
    rows = result["rows"]
    assert [r["ecutwfc"] for r in rows] == [30, 35]
    assert all(r["status"] == "OK" and r["atoms"] == 2 and r["energy_v2"] is not None
               for r in rows)
    assert (tmp_path / "pseudos").is_dir() and any(
        p.name.startswith("O.") for p in (tmp_path / "pseudos").iterdir())
