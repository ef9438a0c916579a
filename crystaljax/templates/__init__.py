"""Crystal templates: the fixed lattice + sites an agent decorates, and their graphs."""

from crystaljax.templates.core import (
    CrystalTemplate,
    TemplateError,
    from_cif,
    from_mp20_csv,
    from_structure,
)
from crystaljax.templates.prototypes import PROTOTYPES, list_prototypes, prototype

__all__ = [
    "CrystalTemplate",
    "TemplateError",
    "PROTOTYPES",
    "from_cif",
    "from_mp20_csv",
    "from_structure",
    "list_prototypes",
    "prototype",
]
