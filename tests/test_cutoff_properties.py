"""The property rule of cutoff convergence (crystaljax.benchmarks.cutoff_properties): its
deviations and choice on made-up rows, and one real two-volume scan of Al with pw.x."""

from __future__ import annotations

import math
import shutil

import pytest

from crystaljax.benchmarks import cutoff_properties as props


def _row(ecut, p0, p1, bands, status="OK"):
    return {"ecutwfc": ecut, "status": status, "volume_v0": 20.0, "volume_v1": 18.0,
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
