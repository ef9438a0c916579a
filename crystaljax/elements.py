"""Element vocabularies and the per-element feature table.

The vocabulary order matters: an action index is the position of the element in
its vocabulary. The three built-in vocabularies are CrystalGym's, in its order; this
module is their one definition (the QE presets cover :data:`LARGE`; presets and tests
import it from here). Token ``len(vocab)`` means "empty site" in observations.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from ase.data import covalent_radii
from pymatgen.core import Element

SMALL = ("Li", "Na", "K", "Rb", "Be", "Ca", "Mg", "Sr", "H", "C", "N", "O", "P", "S", "Se",
         "F", "Cl", "Br")
MEDIUM = SMALL + ("B", "Si", "Ge", "Fe", "Cu", "Co", "Ni", "Mn", "Al", "Zn", "Sn", "Cr")
LARGE = MEDIUM + ("In", "Sb", "V", "Mo", "Ga", "Ag", "Ti", "Ba", "Y", "Te", "I", "Pd", "Rh",
                  "As", "Pt", "Cs", "Au", "Bi", "Zr", "La")

VOCABULARIES: dict[str, tuple[str, ...]] = {"small": SMALL, "medium": MEDIUM, "large": LARGE}

#: oxidation states covered by the multi-hot columns of the feature table
OXIDATION_STATES = tuple(range(-4, 9))

#: column names of :func:`element_features`
FEATURE_NAMES = (
    ("Z", "atomic_mass_amu", "electronegativity_pauling", "covalent_radius_A", "group", "period")
    + tuple(f"ox_{s:+d}" for s in OXIDATION_STATES)
)


class UnknownElementError(ValueError):
    """An element symbol that is not in the periodic table."""


def check_symbol(symbol: str) -> str:
    """Return ``symbol`` if it names a real element, else raise UnknownElementError."""
    if not isinstance(symbol, str) or not Element.is_valid_symbol(symbol):
        raise UnknownElementError(
            f"unknown element symbol {symbol!r}: use a chemical symbol such as 'Na' or 'Cl'"
        )
    return symbol


def get_vocabulary(vocab: str | Sequence[str]) -> tuple[str, ...]:
    """Resolve a vocabulary name ('small', 'medium', 'large') or a list of symbols.

    Raises:
      ValueError: unknown vocabulary name, empty or duplicated list.
      UnknownElementError: a symbol that is not an element.
    """
    if isinstance(vocab, str):
        if vocab not in VOCABULARIES:
            raise ValueError(
                f"unknown vocabulary {vocab!r}; choose one of {sorted(VOCABULARIES)} "
                "or give a list of element symbols"
            )
        return VOCABULARIES[vocab]
    symbols = tuple(vocab)
    if not symbols:
        raise ValueError("an element vocabulary needs at least one element")
    for s in symbols:
        check_symbol(s)
    duplicated = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicated:
        raise ValueError(f"element vocabulary lists {duplicated} more than once")
    return symbols


@functools.cache
def _feature_row(symbol: str) -> tuple[float, ...]:
    el = Element(symbol)
    x = el.X
    ox = set(el.common_oxidation_states)
    return (
        float(el.Z),
        float(el.atomic_mass),
        float(x) if x == x else 0.0,  # noble gases have no Pauling value (nan)
        float(covalent_radii[el.Z]),
        float(el.group),
        float(el.row),
    ) + tuple(1.0 if s in ox else 0.0 for s in OXIDATION_STATES)


def element_features(vocab: Sequence[str]) -> np.ndarray:
    """Feature table of a vocabulary, float32 ``[V, len(FEATURE_NAMES)]``.

    Columns (see FEATURE_NAMES): Z, atomic mass (amu), Pauling electronegativity
    (0 where undefined), covalent radius (Å, ASE), group, period, and a multi-hot of
    pymatgen's common oxidation states from -4 to +8.
    """
    return np.array([_feature_row(check_symbol(s)) for s in vocab], dtype=np.float32)


def atomic_masses(vocab: Sequence[str]) -> np.ndarray:
    """Atomic masses of a vocabulary in amu, float32 ``[V]``."""
    return element_features(vocab)[:, FEATURE_NAMES.index("atomic_mass_amu")]
