"""UPF files and the JSON mapping file of a user UPF family (e.g. SSSP).

Mapping file format::

    {"name": "sssp-efficiency",            # optional (default: the file's stem)
     "pseudo_dir": "/path/to/sssp",        # relative paths: to the mapping file
     "elements": {"Si": {"file": "Si.pbe-n-rrkjus_psl.1.0.0.UPF",
                         "ecutwfc": 30, "ecutrho": 240}, ...}}

``ecutrho`` defaults to 4 x ``ecutwfc`` (norm-conserving) when omitted. Cutoffs are in
Rydberg. :func:`crystaljax.oracles.qe.family.load_upf_family` turns a mapping into a family.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

_UPF_ZVAL = re.compile(r'z_valence\s*=\s*"\s*([-+0-9.EeDd]+)\s*"', re.IGNORECASE)
_UPF1_ZVAL = re.compile(r"^\s*([-+0-9.EeDd]+)\s+Z valence", re.MULTILINE)


def upf_valence(path: Path | str) -> float:
    """Valence charge read from a UPF file header (UPF v1 or v2)."""
    head = Path(path).read_text(errors="replace")[:20000]
    match = _UPF_ZVAL.search(head) or _UPF1_ZVAL.search(head)
    if match is None:
        raise ValueError(f"cannot read the valence charge of {path}")
    return float(match.group(1).replace("D", "E").replace("d", "e"))


@dataclasses.dataclass(frozen=True)
class PseudoSpec:
    """One element of a family.

    Attributes:
      element: chemical symbol.
      filename: file name inside the family's directory.
      z_valence: valence electrons.
      ecutwfc: recommended wavefunction cutoff (Ry).
      ecutrho: recommended charge-density cutoff (Ry).
      sha256: hash of the file's content (part of the cache settings hash).
    """

    element: str
    filename: str
    z_valence: float
    ecutwfc: float
    ecutrho: float
    sha256: str


@dataclasses.dataclass(frozen=True)
class UpfMapping:
    """A parsed mapping file: family name, the directory of its files, its elements."""

    name: str
    directory: Path
    entries: dict[str, PseudoSpec]


def read_upf_mapping(mapping_file: Path | str) -> UpfMapping:
    """Read and check a mapping file (every named UPF file must exist).

    Raises:
      FileNotFoundError: the mapping file or a UPF file it names is missing.
      ValueError: malformed JSON, no ``elements``, a cutoff that is not a positive number.
    """
    mapping_file = Path(mapping_file)
    try:
        data = json.loads(mapping_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{mapping_file}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("elements"), dict):
        raise ValueError(f"{mapping_file}: expected an object with an 'elements' mapping")
    directory = Path(data.get("pseudo_dir", "."))
    if not directory.is_absolute():
        directory = (mapping_file.parent / directory).resolve()
    entries = {}
    for element, item in data["elements"].items():
        path = directory / item["file"]
        if not path.is_file():
            raise FileNotFoundError(f"pseudopotential file for {element} not found: {path}")
        try:
            ecutwfc = float(item["ecutwfc"])
            ecutrho = float(item.get("ecutrho", 4.0 * ecutwfc))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{mapping_file}: {element} needs a numeric ecutwfc (Ry)") from None
        if not (ecutwfc > 0 and ecutrho > 0):
            raise ValueError(f"{mapping_file}: {element}'s cutoffs must be > 0 Ry")
        entries[element] = PseudoSpec(
            element, item["file"], upf_valence(path), ecutwfc, ecutrho,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
    return UpfMapping(str(data.get("name", mapping_file.stem)), directory, entries)


__all__ = ["PseudoSpec", "UpfMapping", "read_upf_mapping", "upf_valence"]
