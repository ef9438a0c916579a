"""Spin-polarised QE runs (issue 13 item 4): which crystals, the pw.x input, the parsed
magnetisation and the band gap over both spin channels."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from qe_helpers import bcc, fcc, requires_pw

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.qe import attempts
from crystaljax.oracles.qe.band_gap import (
    band_gap,
    channel_band_edges,
    occupied_bands,
    spin_band_edges,
)
from crystaljax.oracles.qe.cli import add_dft_parser, run_dft
from crystaljax.oracles.qe.family import write_gth_family
from crystaljax.oracles.qe.inputs import (
    MAGNETIC_ELEMENTS,
    STARTING_MOMENT,
    PwSettings,
    spin_polarized,
    write_pw_input,
)
from crystaljax.oracles.qe.parse import parse_output
from crystaljax.oracles.qe.presets import GTH_VARIANTS, PSLIBRARY_INPUTS, get_preset
from crystaljax.oracles.qe.runner import PwRun, RunnerConfig

PRESET = get_preset("test")
SMEARED = PwSettings(occupations="smearing", smearing="mv", degauss=0.01)


def b2(a: float, first: str, second: str) -> Structure:
    """Two-atom CsCl (B2) cell (Å)."""
    return Structure(Lattice.cubic(a), [first, second], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def gth(tmp_path_factory):
    """GTH family (input writing only: Ni 10, Al 3, Fe 8 valence electrons)."""
    return write_gth_family(tmp_path_factory.mktemp("gth"),
                            {e: PRESET.cutoffs[e] for e in ("Ni", "Al", "Fe", "Mg", "O")},
                            GTH_VARIANTS)


@pytest.fixture(scope="module")
def paw(tmp_path_factory):
    """The test preset's PAW sets (ld1.x, generated once per machine) of Fe and Al."""
    return write_gth_family(tmp_path_factory.mktemp("paw"),
                            {e: PRESET.cutoffs[e] for e in ("Fe", "Al")}, GTH_VARIANTS,
                            generated={e: PSLIBRARY_INPUTS[e] for e in ("Fe", "Al")},
                            name=PRESET.family)


# -- which crystals, and their input -------------------------------------------------------

def test_the_magnetic_elements_are_the_3d_magnets():
    assert MAGNETIC_ELEMENTS == frozenset({"V", "Cr", "Mn", "Fe", "Co", "Ni"})
    assert isinstance(MAGNETIC_ELEMENTS, frozenset)
    assert spin_polarized(b2(2.9, "Ni", "Al"), PwSettings())
    assert not spin_polarized(b2(2.9, "Ni", "Al"), PwSettings(spin="off"))
    assert not spin_polarized(fcc(4.0, "Al"), PwSettings())


def test_a_crystal_with_nickel_starts_ferromagnetic_on_nickel_only(gth):
    text = write_pw_input(b2(2.89, "Ni", "Al"), SMEARED, gth)
    assert "nspin = 2" in text
    # species are sorted (Al 1, Ni 2): 5 Bohr magnetons of Ni's 10 valence electrons
    assert f"starting_magnetization(2) = {STARTING_MOMENT / 10:.10g}" in text
    assert "starting_magnetization(1)" not in text
    # 13 electrons, starting moment 5: the majority channel holds 9, plus 4 empty bands
    assert "nbnd = 13" in text


def test_spin_off_and_non_magnetic_crystals_stay_spin_degenerate(gth):
    for structure, settings in [(bcc(2.83, "Fe"), SMEARED.replace(spin="off")),
                                (b2(4.2, "Mg", "O"), SMEARED), (b2(4.2, "Mg", "O"), PwSettings())]:
        text = write_pw_input(structure, settings, gth)
        assert "nspin = 1" in text and "starting_magnetization" not in text


def test_a_spin_polarised_run_needs_smearing(gth):
    with pytest.raises(ValueError, match="smeared occupations"):
        write_pw_input(bcc(2.83, "Fe"), PwSettings(occupations="fixed"), gth)


def test_spin_is_a_checked_setting():
    from crystaljax.config import ConfigError
    from crystaljax.oracles.qe.options import QEOptions, setting_keys

    assert "spin" in setting_keys()
    assert QEOptions.from_mapping({"settings": {"spin": "off"}}).settings == {"spin": "off"}
    with pytest.raises(ConfigError, match="settings.spin must be one of"):
        QEOptions.from_mapping({"settings": {"spin": "antiferro"}})


# -- parsing and the gap over both channels --------------------------------------------------

def _listing(channels: dict[str, list[list[float]]], fermi: float, magnetization: float) -> str:
    """A pw.x 6.7-style output of a converged spin-polarised smeared scf."""
    text = ("     number of atoms/cell      =            2\n"
            "     number of electrons       =        14.00\n"
            "     total magnetization       =     1.50 Bohr mag/cell\n"
            "     End of self-consistent calculation\n")
    for name, kpoints in channels.items():
        text += f"\n ------ SPIN {name} ----------\n\n\n"
        for i, bands in enumerate(kpoints):
            text += f"          k = 0.{i}000 0.0000 0.0000 (   100 PWs)   bands (ev):\n\n"
            text += "  " + "".join(f"{e:9.4f}" for e in bands) + "\n\n"
            text += "     occupation numbers \n"
            text += "  " + "".join(f"{float(e < fermi):9.4f}" for e in bands) + "\n\n"
    text += (f"     the Fermi energy is    {fermi:.4f} ev\n\n"
             "!    total energy              =     -80.00000000 Ry\n"
             f"     total magnetization       =     {magnetization:.2f} Bohr mag/cell\n"
             f"     absolute magnetization    =     {abs(magnetization) + 0.1:.2f} Bohr mag/cell\n"
             "\n     convergence has been achieved in   9 iterations\n\n     JOB DONE.\n")
    return text


#: A ferromagnetic insulator: spin up has 2 occupied bands (top 3.0 eV), spin down 1 (top
#: 1.0 eV), lowest empty levels 6.0 (up) and 4.5 eV (down): gap 4.5 - 3.0 over both channels.
INSULATOR = {"UP": [[-2.0, 2.5, 6.5, 9.0], [-1.5, 3.0, 6.0, 8.0]],
             "DOWN": [[-1.0, 4.5, 7.0, 9.5], [1.0, 5.0, 7.5, 9.0]]}


def test_spin_blocks_and_magnetization_are_parsed():
    out = parse_output(_listing(INSULATOR, 4.0, 2.0))
    assert out.nspin == 2 and out.magnetization == 2.0 and out.absolute_magnetization == 2.1
    assert out.eigenvalues.shape == (4, 4) and out.occupations.shape == (4, 4)
    up, down = out.channels()
    np.testing.assert_array_equal(up, INSULATOR["UP"])
    np.testing.assert_array_equal(down, INSULATOR["DOWN"])
    assert [o.shape for o in out.channels(out.occupations)] == [(2, 4), (2, 4)]


def test_a_spin_degenerate_output_has_one_channel_and_no_magnetization():
    text = _listing({"UP": INSULATOR["UP"]}, 4.0, 0.0).replace(" ------ SPIN UP ----------\n", "")
    text = "\n".join(line for line in text.splitlines() if "magnetization" not in line)
    out = parse_output(text)
    assert out.nspin == 1 and out.magnetization is None and len(out.channels()) == 1


def test_the_gap_is_taken_over_both_spin_channels():
    up, down = (np.array(INSULATOR[c]) for c in ("UP", "DOWN"))
    # HOMO = max over channels (3.0, up), LUMO = min over channels (4.5, down)
    assert channel_band_edges([up, down], [2, 1]) == (3.0, 4.5)
    assert occupied_bands(up, 4.0) == 2 and occupied_bands(down, 4.0) == 1
    assert spin_band_edges([up, down], 4.0) == (3.0, 4.5)
    # a band of one channel crosses the Fermi level: a metal
    assert occupied_bands(up, 2.8) is None and spin_band_edges([up, down], 2.8) is None
    with pytest.raises(ValueError):
        channel_band_edges([up, down], [4, 4])  # no empty band


def test_the_band_gap_recipe_of_a_ferromagnetic_insulator(gth, tmp_path, monkeypatch):
    """The recipe on a canned spin-polarised output (through the restart machinery)."""
    inputs = []

    def fake_run_pw(text, config, label="pw", prepare=None):
        inputs.append(text)
        workdir = tmp_path / f"run{len(inputs)}"
        workdir.mkdir()
        return PwRun(workdir, 0, False, 0.5, _listing(INSULATOR, 4.0, 1.0))

    monkeypatch.setattr(attempts, "run_pw", fake_run_pw)  # where _attempt looks it up
    runner = RunnerConfig(time_limit=60, scratch_root=str(tmp_path))
    result = band_gap(b2(2.9, "Ni", "Al"), gth, PRESET.settings, runner)
    assert result.status == Status.OK, result.reason
    assert result.value == pytest.approx(1.5)
    assert (result.extra["homo"], result.extra["lumo"]) == (3.0, 4.5)
    assert result.extra["magnetization"] == 1.0 and result.extra["spin_polarized"] is True
    assert result.extra["metal"] is False
    assert len(inputs) == 1 and "nspin = 2" in inputs[0] and "occupations = 'smearing'" in inputs[0]
    assert [a["run"] for a in result.extra["attempts"]] == ["gap-spin"]


# -- real pw.x -------------------------------------------------------------------------------

@requires_pw
def test_ferromagnetic_iron_with_pw(paw, tmp_path):
    iron = bcc(2.83, "Fe")
    text = write_pw_input(iron, SMEARED.replace(kppa=PRESET.settings.kppa), paw)
    assert "nspin = 2" in text and "starting_magnetization(1)" in text
    runner = RunnerConfig(time_limit=PRESET.time_limit, scratch_root=str(tmp_path))
    result = band_gap(iron, paw, PRESET.settings, runner)
    assert result.status == Status.OK, result.reason
    assert result.extra["spin_polarized"] is True
    assert result.extra["magnetization"] > 1.0  # a ferromagnet (converged PBE: about 2.2)
    assert result.extra["metal"] is True and result.value == 0.0
    assert len(result.extra["attempts"]) == 1


@requires_pw
def test_a_non_magnetic_metal_stays_spin_degenerate_with_pw(paw, tmp_path):
    runner = RunnerConfig(time_limit=PRESET.time_limit, scratch_root=str(tmp_path))
    result = band_gap(fcc(4.04, "Al"), paw, PRESET.settings, runner)
    assert result.status == Status.OK, result.reason
    assert "magnetization" not in result.extra and "spin_polarized" not in result.extra


# -- crystaljax dft --------------------------------------------------------------------------

class _FakeOracle:
    unit = "eV"

    def __init__(self, result):
        self.result = result

    def evaluate(self, structures):
        return [self.result]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.mark.parametrize("magnetization", [2.2, None])
def test_dft_json_has_the_magnetization(tmp_path, capsys, monkeypatch, magnetization):
    import crystaljax.oracles.qe.oracle as oracle_module

    extra = {"energy_per_atom": -10.0}
    if magnetization is not None:
        extra["magnetization"] = magnetization
    calls = []

    def fake_make(property_name, **options):
        calls.append(options)
        return _FakeOracle(OracleResult(0.0, Status.OK, "", 1.0, extra))

    monkeypatch.setattr(oracle_module, "make_qe_oracle", fake_make)
    cif = tmp_path / "fe.cif"
    bcc(2.83, "Fe").to(filename=str(cif))
    parser = argparse.ArgumentParser(prog="crystaljax")
    add_dft_parser(parser.add_subparsers(dest="command", required=True))
    assert run_dft(parser.parse_args(["dft", str(cif), "--property", "band_gap", "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"property", "value", "unit", "status", "seconds", "reason",
            "energy_per_atom", "magnetization"} == set(out)
    assert out["magnetization"] == magnetization
    assert calls[0]["recipe"] == {}
    assert not math.isnan(out["value"])
