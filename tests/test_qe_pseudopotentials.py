"""Pseudopotential families: GTH generation from cp2k-data and user UPF mappings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crystaljax.oracles.qe.presets import GTH_VARIANTS, LARGE_VOCABULARY
from crystaljax.oracles.qe.pseudopotentials import (
    CP2K_GTH_FILES,
    MissingPseudopotential,
    format_pspcod10,
    load_upf_family,
    parse_cp2k_gth,
    upf_valence,
    write_gth_family,
)

pytestmark = pytest.mark.skipif(
    not Path(CP2K_GTH_FILES[0]).is_file(), reason="cp2k-data not installed"
)


def test_every_large_vocabulary_element_has_its_variant():
    entries = parse_cp2k_gth()
    assert set(GTH_VARIANTS) == set(LARGE_VOCABULARY)
    for element, name in GTH_VARIANTS.items():
        entry = entries[element][name]
        assert entry.z_valence == int(name.rsplit("q", 1)[1])


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
