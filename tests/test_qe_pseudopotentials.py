"""Pseudopotential families: GTH generation from cp2k-data and user UPF mappings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from qe_helpers import requires_pw, rocksalt

from crystaljax.elements import LARGE
from crystaljax.oracles.base import Status
from crystaljax.oracles.qe.family import MissingPseudopotential, load_upf_family, write_gth_family
from crystaljax.oracles.qe.gth import CP2K_GTH_FILES, format_pspcod10, parse_cp2k_gth
from crystaljax.oracles.qe.ld1 import (
    generate_ld1_pseudo,
    ld1_input_path,
    ld1_transferability,
    normalize_ld1_upf,
)
from crystaljax.oracles.qe.oracle import QEOracle
from crystaljax.oracles.qe.presets import GTH_VARIANTS, LD1_INPUTS, get_preset, pseudo_variant
from crystaljax.oracles.qe.recipes import band_gap
from crystaljax.oracles.qe.runner import RunnerConfig
from crystaljax.oracles.qe.upf import upf_valence

pytestmark = pytest.mark.skipif(
    not Path(CP2K_GTH_FILES[0]).is_file(), reason="cp2k-data not installed"
)
requires_ld1 = pytest.mark.skipif(shutil.which("ld1.x") is None, reason="ld1.x not installed")


def test_every_large_vocabulary_element_has_its_variant():
    entries = parse_cp2k_gth()
    assert set(GTH_VARIANTS) == set(LARGE)  # every element has a GTH fall-back
    assert set(LD1_INPUTS) <= set(LARGE)
    for element, name in GTH_VARIANTS.items():
        entry = entries[element][name]
        assert entry.z_valence == int(name.rsplit("q", 1)[1])
        assert pseudo_variant(element, generated={}) == name
    for element, name in LD1_INPUTS.items():
        assert ld1_input_path(name).is_file()  # shipped with the package
        assert pseudo_variant(element) == f"ld1:{name}"
    assert LD1_INPUTS["Na"] == "Na.in"  # Na: semicore PAW from ld1.x (docs/VALIDATION.md)


def test_normalize_ld1_upf_blanks_the_date_and_wraps_long_numeric_lines():
    long_row = "  ".join(f"{0.1 * i:.16f}" for i in range(80))  # > 1024 characters
    text = (
        "<PP_INFO>\n    Generation date: 25Nov2026\n</PP_INFO>\n"
        '  <PP_HEADER generated="x" author="a" date="25Nov2026" element="Na"\n'
        '    z_valence="9.0"/>\n'
        f'    <PP_DIJ columns="4" rows="4">\n{long_row}\n    </PP_DIJ>\n'
    )
    out = normalize_ld1_upf(text)
    assert "25Nov2026" not in out and 'date=""' in out and 'element="Na"' in out
    assert max(len(line) for line in out.splitlines()) < 120
    assert out.split("<PP_DIJ", 1)[1].split()[2:-1] == [f"{0.1 * i:.16f}" for i in range(80)]
    assert normalize_ld1_upf(out) == out


def test_pspcod10_layout_of_a_three_channel_entry():
    entry = parse_cp2k_gth()["Cu"]["GTH-PBE-q11"]
    lines = format_pspcod10(entry).splitlines()
    assert lines[1].split()[:2] == ["29", "11"]
    assert lines[2].split()[:6] == ["10", "11", "2", "0", "2001", "0"]
    assert int(lines[4].split()[0]) == 3
    # per channel: header + (nprj - 1) h rows (+ nprj k rows for l > 0)
    expected = sum(
        1 + (c.n_projectors - 1) + (c.n_projectors if ell > 0 else 0)
        for ell, c in enumerate(entry.channels)
    )
    assert len(lines) == 5 + expected
    first = lines[5].split()
    assert float(first[0]) == pytest.approx(entry.channels[0].radius)
    assert int(first[1]) == entry.channels[0].n_projectors


def test_entry_without_projectors_gets_one_empty_channel():
    text = format_pspcod10(parse_cp2k_gth()["H"]["GTH-PBE-q1"])
    lines = text.splitlines()
    assert lines[2].split()[2] == "0"  # lmax
    assert lines[4].split()[0] == "1" and lines[5].split()[1] == "0"


def test_family_writes_files_and_reports_missing(tmp_path):
    family = write_gth_family(tmp_path, {"Na": (30, 120), "Cl": (100, 400)}, GTH_VARIANTS)
    assert (tmp_path / "Na.gth").is_file() and (tmp_path / "Cl.gth").is_file()
    assert family.spec("Na").z_valence == 1
    assert family.cutoffs(["Na", "Cl"]) == (100, 400)
    assert family.missing(["Na", "Xe"]) == ["Xe"]
    with pytest.raises(MissingPseudopotential, match="Xe"):
        family.spec("Xe")
    again = write_gth_family(tmp_path, {"Na": (30, 120), "Cl": (100, 400)}, GTH_VARIANTS)
    assert again.fingerprint() == family.fingerprint()
    other = write_gth_family(tmp_path, {"Na": (40, 160), "Cl": (100, 400)}, GTH_VARIANTS)
    assert other.fingerprint() != family.fingerprint()


def test_upf_mapping_file(tmp_path):
    (tmp_path / "pp").mkdir()
    (tmp_path / "pp" / "Si.upf").write_text(
        '<UPF version="2.0.1">\n<PP_HEADER element="Si" z_valence="4.0" />\n</UPF>\n'
    )
    (tmp_path / "pp" / "O.UPF").write_text(
        "<PP_HEADER>\n   0                   Version Number\n  O   Element\n"
        "    6.00000000000      Z valence\n</PP_HEADER>\n"
    )
    mapping = tmp_path / "family.json"
    mapping.write_text(json.dumps({
        "name": "mine", "pseudo_dir": "pp",
        "elements": {"Si": {"file": "Si.upf", "ecutwfc": 30, "ecutrho": 240},
                     "O": {"file": "O.UPF", "ecutwfc": 50}},
    }))
    family = load_upf_family(mapping)
    assert family.name == "mine"
    assert family.directory == (tmp_path / "pp").resolve()
    assert family.spec("Si").z_valence == 4.0 and family.spec("O").z_valence == 6.0
    assert family.cutoffs(["Si", "O"]) == (50.0, 240.0)
    assert upf_valence(tmp_path / "pp" / "O.UPF") == 6.0


def test_upf_mapping_with_missing_file_is_a_clear_error(tmp_path):
    mapping = tmp_path / "family.json"
    mapping.write_text(json.dumps({"elements": {"Si": {"file": "nope.upf", "ecutwfc": 30}}}))
    with pytest.raises(FileNotFoundError, match="Si"):
        load_upf_family(mapping)


@requires_ld1
def test_ld1_generates_the_default_na_pseudopotential(tmp_path):
    cutoffs = get_preset("default").cutoffs
    family = write_gth_family(
        tmp_path, {"Na": cutoffs["Na"], "Cl": cutoffs["Cl"]}, GTH_VARIANTS, generated=LD1_INPUTS
    )
    spec = family.spec("Na")
    path = tmp_path / spec.filename
    assert spec.filename.startswith("Na.ld1-") and spec.filename.endswith(".UPF")
    assert spec.z_valence == 9.0  # 2s2 2p6 3s1: semicore in valence
    assert (spec.ecutwfc, spec.ecutrho) == cutoffs["Na"]
    text = path.read_text()
    assert 'pseudo_type="PAW"' in text and 'functional=" SLA  PW   PBX  PBC"' in text
    assert max(len(line) for line in text.splitlines()) < 1024  # readable by pw.x 6.7
    assert path.with_suffix(".out").is_file()  # ld1.x's log, with its own test
    assert family.spec("Cl").filename == "Cl.gth" and family.name == "gth-pbe-cp2k+ld1"
    # generated once: a second family reuses the file; the same content, the same key
    mtime = path.stat().st_mtime_ns
    again = write_gth_family(tmp_path, {"Na": cutoffs["Na"]}, GTH_VARIANTS, generated=LD1_INPUTS)
    assert path.stat().st_mtime_ns == mtime and again.spec("Na").sha256 == spec.sha256
    # a changed input is a new file (file name keyed by the input's hash)
    changed = tmp_path / "Na-changed.in"
    changed.write_text(ld1_input_path("Na.in").read_text().replace("rcloc=1.6", "rcloc=1.7"))
    other = generate_ld1_pseudo("Na", changed, tmp_path)
    assert other != path and other.is_file()


@requires_ld1
def test_the_oracle_default_family_takes_na_from_ld1(tmp_path):
    with QEOracle("band_gap", cache=None, pseudo_dir=tmp_path / "pp",
                  runner=RunnerConfig(scratch_root=str(tmp_path))) as oracle:
        spec = oracle.family.spec("Na")
        assert spec.filename.startswith("Na.ld1-") and spec.z_valence == 9.0
        assert oracle.family.spec("K").filename == "K.gth"
        assert upf_valence(oracle.family.directory / spec.filename) == 9.0
    # the fast preset keeps the cheap valence-only GTH Na (presets.FAST_GTH_FALLBACK)
    with QEOracle("band_gap", preset="fast", cache=None, pseudo_dir=tmp_path / "pp",
                  runner=RunnerConfig(scratch_root=str(tmp_path))) as fast:
        assert fast.family.spec("Na").filename == "Na.gth"
        assert fast.family.spec("Na").z_valence == 1.0


@requires_ld1
def test_ld1_transferability_of_na():
    # ld1.x's own test: all-electron vs pseudo atom in the neutral, ionised (Na+),
    # half-ionised and excited configurations; a ghost state or a poor core shows up
    # as a mismatch of energy differences or eigenvalues.
    configs = ["2s2 2p6 3s1 3p0", "2s2 2p6 3s0 3p0", "2s2 2p6 3s0.5 3p0.5", "2s2 2p6 3s0 3p1"]
    tests = ld1_transferability(LD1_INPUTS["Na"], configs)
    ref = tests[0]
    for test in tests:
        assert set(test.eigenvalues) == {"2S", "2P", "3S", "3P"}
        for ae, ps in test.eigenvalues.values():
            assert abs(ae - ps) < 1e-3  # Ry
        d_ae, d_ps = test.etot_ae - ref.etot_ae, test.etot_ps - ref.etot_ps
        assert abs(d_ae - d_ps) < 1e-4, test.config  # Ry
    assert tests[1].etot_ae - ref.etot_ae == pytest.approx(0.378, abs=0.01)  # ionisation, Ry


def test_missing_ld1_leaves_the_element_out_with_the_reason(tmp_path):
    with pytest.warns(RuntimeWarning, match="no Na pseudopotential"):
        family = write_gth_family(tmp_path, {"Na": (80, 320), "Cl": (100, 400)}, GTH_VARIANTS,
                                  generated=LD1_INPUTS, ld1_command="no-such-ld1.x")
    assert family.missing(["Na", "Cl"]) == ["Na"]
    with pytest.raises(MissingPseudopotential, match="no-such-ld1.x not found"):
        family.spec("Na")


@requires_ld1
@requires_pw
def test_pw_runs_nacl_with_the_generated_na(tmp_path):
    preset = get_preset("test")
    family = write_gth_family(tmp_path / "pp", {"Na": (25, 100), "Cl": (25, 100)}, GTH_VARIANTS,
                              generated=LD1_INPUTS)
    runner = RunnerConfig(time_limit=preset.time_limit, scratch_root=str(tmp_path / "run"))
    result = band_gap(rocksalt(5.69, "Na", "Cl"), family, preset.settings, runner)
    assert result.status == Status.OK, result.reason
    assert 3.0 < result.value < 7.0  # an insulator: no ghost state in the gap
    assert result.extra["energy_per_atom"] < -900  # 16 valence electrons, PAW (eV/atom)
