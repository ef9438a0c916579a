import collections

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystaljax.templates import (
    PROTOTYPES,
    TemplateError,
    from_cif,
    from_mp20_csv,
    from_structure,
    list_prototypes,
    prototype,
)
from crystaljax.templates.graph import GraphConfig, bfs_order, neighbor_graph


def test_prototype_library_covers_systems_and_sizes():
    names = list_prototypes()
    assert len(names) >= 20
    systems = collections.Counter(PROTOTYPES[n].crystal_system for n in names)
    for system in ("cubic", "tetragonal", "hexagonal", "trigonal", "orthorhombic"):
        assert systems[system] >= 2, system
    for name in ("rocksalt", "cesium_chloride", "zincblende", "wurtzite", "fluorite",
                 "perovskite", "rutile", "spinel", "full_heusler", "half_heusler"):
        assert name in names


@pytest.mark.parametrize("name", list_prototypes())
def test_prototype_geometry(name):
    t = prototype(name)
    spec = PROTOTYPES[name]
    assert 2 <= t.num_sites <= 16
    assert t.num_sites == spec.expected_sites
    assert t.spacegroup == spec.expected_spacegroup
    s = t.to_structure()
    # no two atoms closer than 0.9 Å: the Wyckoff expansion produced a sane crystal
    dm = s.distance_matrix + np.eye(len(s)) * 100
    assert dm.min() > 0.9


def test_crystalgym_cells():
    bcc = prototype("cg-bcc4-5.17")
    assert bcc.volume == pytest.approx(106.33, abs=0.05)
    a, b, c, al, be, ga = bcc.lattice_parameters
    assert (a, al) == (pytest.approx(5.1693), pytest.approx(109.4712))
    for name, a in (("cg-perovskite-4.27", 4.2748), ("cg-perovskite-4.54", 4.5443)):
        t = prototype(name)
        assert t.num_sites == 5 and t.volume == pytest.approx(a**3, rel=1e-6)
        np.testing.assert_allclose(t.frac_coords[1], [0.5, 0.5, 0.5])


def test_unknown_prototype_lists_known():
    with pytest.raises(KeyError, match="rocksalt"):
        prototype("rock_salt_typo")


def test_cif_round_trip(tmp_path):
    s = prototype("rutile").to_structure()
    path = tmp_path / "rutile.cif"
    s.to(filename=str(path))
    t = from_cif(path)
    assert t.name == "rutile" and t.num_sites == 6 and t.spacegroup == 136
    assert t.volume == pytest.approx(s.volume, rel=1e-6)


def test_broken_cif(tmp_path):
    path = tmp_path / "broken.cif"
    path.write_text("data_x\n_cell_length_a 3.0\nthis is not a cif loop\n")
    with pytest.raises(TemplateError, match="broken.cif"):
        from_cif(path)
    with pytest.raises(FileNotFoundError, match="missing.cif"):
        from_cif(tmp_path / "missing.cif")


def test_disordered_cif_rejected(tmp_path):
    s = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    path = tmp_path / "disordered.cif"
    s.to(filename=str(path))
    with pytest.raises(TemplateError, match="partial occupancy"):
        from_cif(path)
    with pytest.raises(TemplateError, match="disorder"):
        from_structure(s)


def _write_mp20(path, structures):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "material_id", "formation_energy_per_atom", "band_gap", "pretty_formula",
                    "e_above_hull", "elements", "cif", "spacegroup.number"])
        for i, (mid, s, sg) in enumerate(structures):
            w.writerow([i, mid, -1.0, 0.5, s.composition.reduced_formula, 0.0,
                        str([e.symbol for e in s.composition]), s.to(fmt="cif"), sg])


def test_mp20_loader(tmp_path):
    path = tmp_path / "val.csv"
    rows = [("mp-22862", prototype("rocksalt").to_structure(), 225),
            ("mp-2657", prototype("rutile").to_structure(), 136)]
    _write_mp20(path, rows)
    t = from_mp20_csv(path, 1)
    assert t.name == "mp-2657" and t.num_sites == 6 and t.spacegroup == 136
    assert "row 1" in t.source
    assert t.volume == pytest.approx(rows[1][1].volume, rel=1e-6)  # Niggli keeps the volume
    with pytest.raises(IndexError, match="has 2 data rows"):
        from_mp20_csv(path, 5)
    bad = tmp_path / "bad.csv"
    bad.write_text("material_id,formula\nmp-1,Na\n")
    with pytest.raises(TemplateError, match="missing column"):
        from_mp20_csv(bad, 0)


@pytest.mark.parametrize("method", ["crystalnn", "radius"])
def test_neighbor_graph_is_symmetric(method):
    t = prototype("perovskite")
    g = neighbor_graph(t, GraphConfig(method=method, cutoff=4.0, max_neighbors=8))
    edges = {(s, r, tuple(i)) for s, r, i in zip(g.senders, g.receivers, g.images)}
    for s, r, img in edges:
        assert (r, s, tuple(-x for x in img)) in edges
    assert g.distances.min() > 1.5 and g.distances.max() < 4.0 + 1e-6
    if method == "crystalnn":  # Ti has 6 O neighbours, Sr 12 in the perovskite
        assert (g.senders == 1).sum() == 6 and (g.senders == 0).sum() == 12


def test_bfs_order_breadth_first_and_disconnected():
    # path graph 0-1-2-3 plus an isolated pair 4-5
    senders = np.array([0, 1, 2, 4])
    receivers = np.array([1, 2, 3, 5])
    assert bfs_order(6, senders, receivers, 2).tolist() == [2, 1, 3, 0, 4, 5]
    assert bfs_order(6, senders, receivers, 5).tolist() == [5, 4, 0, 1, 2, 3]
    assert bfs_order(3, np.array([], int), np.array([], int), 1).tolist() == [1, 0, 2]
