import numpy as np
import pytest

from crystaljax.elements import (
    FEATURE_NAMES,
    LARGE,
    MEDIUM,
    SMALL,
    UnknownElementError,
    atomic_masses,
    element_features,
    get_vocabulary,
)


def test_vocabularies_match_crystalgym_order():
    assert SMALL == ("Li", "Na", "K", "Rb", "Be", "Ca", "Mg", "Sr", "H", "C", "N", "O", "P", "S",
                     "Se", "F", "Cl", "Br")
    assert len(SMALL) == 18 and len(MEDIUM) == 30 and len(LARGE) == 50
    assert MEDIUM[18:] == ("B", "Si", "Ge", "Fe", "Cu", "Co", "Ni", "Mn", "Al", "Zn", "Sn", "Cr")
    assert LARGE[30:] == ("In", "Sb", "V", "Mo", "Ga", "Ag", "Ti", "Ba", "Y", "Te", "I", "Pd",
                          "Rh", "As", "Pt", "Cs", "Au", "Bi", "Zr", "La")
    assert get_vocabulary("medium") == MEDIUM
    assert get_vocabulary(["O", "Mg"]) == ("O", "Mg")


def test_feature_table_values():
    table = element_features(["Na", "Cl", "Fe"])
    assert table.shape == (3, len(FEATURE_NAMES)) and table.dtype == np.float32
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    assert table[0, col["Z"]] == 11 and table[1, col["Z"]] == 17
    np.testing.assert_allclose(table[0, col["atomic_mass_amu"]], 22.99, atol=0.01)
    assert table[1, col["electronegativity_pauling"]] == pytest.approx(3.16, abs=0.01)
    assert table[2, col["group"]] == 8 and table[2, col["period"]] == 4
    assert table[0, col["ox_+1"]] == 1 and table[1, col["ox_-1"]] == 1
    assert table[0, col["covalent_radius_A"]] > table[1, col["covalent_radius_A"]]
    np.testing.assert_allclose(atomic_masses(["H"]), [1.008], atol=1e-3)


@pytest.mark.parametrize("bad", [["Na", "Xx"], ["Na", "Na"], [], "huge"])
def test_bad_vocabularies(bad):
    with pytest.raises(ValueError) as err:
        get_vocabulary(bad)
    if bad == ["Na", "Xx"]:
        assert err.type is UnknownElementError and "'Xx'" in str(err.value)
