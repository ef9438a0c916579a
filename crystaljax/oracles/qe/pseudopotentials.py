"""Pseudopotential families for pw.x, with nothing downloaded.

Two kinds of family share one description (:class:`PseudoFamily`):

* the default **GTH family**, generated at run time from the GTH-PBE
  parameters in Debian's ``cp2k-data`` (``/usr/share/cp2k/GTH_POTENTIALS`` and
  ``POTENTIAL_UZH``) and written as analytic GTH files in ABINIT's ``pspcod = 10`` layout, which
  pw.x reads when the file name ends in ``.gth``;
* a **UPF family** chosen by the user (e.g. SSSP), described by a JSON mapping
  file ``{"pseudo_dir": "...", "elements": {"Si": {"file": "Si.upf",
  "ecutwfc": 30, "ecutrho": 240}, ...}}``.

Cutoffs are in Rydberg, as pw.x expects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pymatgen.core import Element

#: Debian's cp2k-data files with GTH parameters: the classic set, then the
#: UZH set (which adds valence-only variants such as ``Na GTH-PBE-q1``).
CP2K_DATA = Path("/usr/share/cp2k")
CP2K_GTH_FILES = (CP2K_DATA / "GTH_POTENTIALS", CP2K_DATA / "POTENTIAL_UZH")

#: ABINIT ``pspxc`` code of PBE, the functional of every generated file.
_PSPXC_PBE = 11


class MissingPseudopotential(KeyError):
    """An element has no pseudopotential in the chosen family."""


@dataclasses.dataclass(frozen=True)
class GTHChannel:
    """Non-local channel of angular momentum ``l``.

    Attributes:
      radius: projector radius r_l (Bohr).
      h: upper triangle of the h^l matrix (Hartree), row by row:
        ``((h11, h12, h13), (h22, h23), (h33,))`` for three projectors.
    """

    radius: float
    h: tuple[tuple[float, ...], ...]

    @property
    def n_projectors(self) -> int:
        return len(self.h)


@dataclasses.dataclass(frozen=True)
class GTHEntry:
    """One GTH pseudopotential as given in CP2K's data file.

    Attributes:
      element: chemical symbol.
      name: CP2K name, e.g. ``GTH-PBE-q9``.
      electrons: valence electrons per angular momentum (s, p, d, f).
      r_loc: local radius (Bohr).
      c_loc: coefficients C1..C4 of the local part (Hartree).
      channels: non-local channels, l = 0, 1, ...
    """

    element: str
    name: str
    electrons: tuple[int, ...]
    r_loc: float
    c_loc: tuple[float, ...]
    channels: tuple[GTHChannel, ...]

    @property
    def z_valence(self) -> int:
        """Number of valence electrons (ionic charge of the pseudo-ion)."""
        return sum(self.electrons)


def _floats(tokens: Iterable[str]) -> list[float]:
    return [float(t) for t in tokens]


def parse_cp2k_gth(
    paths: Sequence[Path | str] = CP2K_GTH_FILES, functional: str = "PBE"
) -> dict[str, dict[str, GTHEntry]]:
    """Read every GTH entry of one functional from CP2K data files.

    An entry qualifies when its name is ``GTH-<functional>-q<N>`` (e.g.
    ``GTH-PBE-q9``). When two files hold the same element and name, the
    first file wins.

    Args:
      paths: CP2K potential files (``GTH_POTENTIALS``, ``POTENTIAL_UZH``, ...).
      functional: functional tag of the names.

    Returns:
      element symbol -> {entry name -> :class:`GTHEntry`}.
    """
    name_pattern = re.compile(rf"^GTH-{re.escape(functional)}-q\d+$")
    entries: dict[str, dict[str, GTHEntry]] = {}
    for path in paths:
        if not Path(path).is_file():
            continue
        lines = Path(path).read_text().splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            tokens = line.split()
            if (
                len(tokens) < 2
                or line.startswith(("#", " "))
                or not name_pattern.match(tokens[1])
            ):
                i += 1
                continue
            try:
                entry, i = _parse_entry(lines, i)
            except (ValueError, IndexError):  # entries that hold no parameters ("NA")
                i += 1
                continue
            entries.setdefault(entry.element, {}).setdefault(entry.name, entry)
    return entries


def _parse_entry(lines: list[str], i: int) -> tuple[GTHEntry, int]:
    """Parse the entry whose header is ``lines[i]``; returns it and the next line index."""
    element, name = lines[i].split()[:2]
    electrons = tuple(int(t) for t in lines[i + 1].split())
    loc = lines[i + 2].split()
    r_loc, n_loc = float(loc[0]), int(loc[1])
    c_loc = tuple(_floats(loc[2 : 2 + n_loc]))
    n_channels = int(lines[i + 3].split()[0])
    j = i + 4
    channels = []
    for _ in range(n_channels):
        head = lines[j].split()
        radius, n_proj = float(head[0]), int(head[1])
        rows = [tuple(_floats(head[2 : 2 + n_proj]))]
        j += 1
        for row in range(1, n_proj):
            rows.append(tuple(_floats(lines[j].split()[: n_proj - row])))
            j += 1
        channels.append(GTHChannel(radius, tuple(rows) if n_proj else ()))
    return GTHEntry(element, name, electrons, r_loc, c_loc, tuple(channels)), j


def softest_entry(variants: Mapping[str, GTHEntry]) -> GTHEntry:
    """The variant with the fewest valence electrons (the cheapest in plane waves)."""
    return min(variants.values(), key=lambda e: (e.z_valence, e.name))


def format_pspcod10(entry: GTHEntry) -> str:
    """Write ``entry`` in ABINIT's pspcod-10 layout (the ``.gth`` files pw.x reads).

    Layout: title; ``zatom zion date``; ``10 11 lmax 0 2001 0``; ``rloc nloc
    C1..``; number of channels; per channel ``r nprj h11 h12 ..`` followed by
    the remaining upper-triangle rows and, for l > 0, one row of spin-orbit
    k coefficients per projector (zero: GTH-PBE is scalar-relativistic).
    An entry without non-local channels gets one empty s channel, because
    pw.x reads ``lmax + 1`` channel lines.
    """
    z = Element(entry.element).Z
    channels = list(entry.channels) or [GTHChannel(entry.r_loc, ())]
    lmax = len(channels) - 1
    out = [
        f"{entry.element} {entry.name} (CP2K GTH-PBE, converted by crystaljax)",
        f"{z:d} {entry.z_valence:d} 010101 zatom,zion,pspdat",
        f"10 {_PSPXC_PBE:d} {lmax:d} 0 2001 0 pspcod,pspxc,lmax,lloc,mmax,r2well",
        f"{entry.r_loc:.8f} {len(entry.c_loc):d} "
        + " ".join(f"{c:.8f}" for c in entry.c_loc)
        + " rloc nloc c1..c4",
        f"{len(channels):d} nnonloc",
    ]
    for ell, channel in enumerate(channels):
        n = channel.n_projectors
        first = " ".join(f"{h:.8f}" for h in channel.h[0]) if n else ""
        out.append(f"{channel.radius:.8f} {n:d} {first}".rstrip())
        for row in channel.h[1:]:
            out.append(" ".join(f"{h:.8f}" for h in row))
        if ell > 0:
            for row in range(n):
                out.append(" ".join("0.0" for _ in range(n - row)))
    return "\n".join(out) + "\n"


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
class PseudoFamily:
    """A set of pseudopotential files in one directory, with cutoffs per element."""

    name: str
    directory: Path
    specs: Mapping[str, PseudoSpec]

    def spec(self, element: str) -> PseudoSpec:
        """The element's entry; raises :class:`MissingPseudopotential` if absent."""
        try:
            return self.specs[element]
        except KeyError:
            raise MissingPseudopotential(
                f"no pseudopotential for element {element!r} in family {self.name!r}"
            ) from None

    def missing(self, elements: Iterable[str]) -> list[str]:
        """Elements of ``elements`` that the family lacks, sorted."""
        return sorted({e for e in elements if e not in self.specs})

    def cutoffs(self, elements: Iterable[str]) -> tuple[float, float]:
        """(ecutwfc, ecutrho) in Ry for a crystal: the maximum over its elements."""
        specs = [self.spec(e) for e in set(elements)]
        return max(s.ecutwfc for s in specs), max(s.ecutrho for s in specs)

    def fingerprint(self) -> str:
        """Hash of file contents and cutoffs (changes when any result could change)."""
        payload = sorted(
            (s.element, s.sha256, s.ecutwfc, s.ecutrho, s.z_valence) for s in self.specs.values()
        )
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_gth_family(
    directory: Path | str,
    cutoffs: Mapping[str, tuple[float, float]],
    variants: Mapping[str, str] | None = None,
    sources: Sequence[Path | str] = CP2K_GTH_FILES,
) -> PseudoFamily:
    """Generate ``<El>.gth`` files for the elements of ``cutoffs`` into ``directory``.

    Files are written atomically (temp file + rename), so concurrent workers
    writing the same family never read a half-written file.

    Args:
      directory: target directory (created if needed).
      cutoffs: element -> (ecutwfc, ecutrho) in Ry; only these elements are written.
      variants: element -> CP2K entry name (e.g. ``{"Na": "GTH-PBE-q1"}``);
        elements not named get their softest GTH-PBE variant.
      sources: CP2K data files to read.

    Returns:
      The family; elements (or named variants) missing from ``sources`` are
      left out of it, so they report a missing pseudopotential.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = parse_cp2k_gth(sources)
    variants = dict(variants or {})
    specs = {}
    for element, (ecutwfc, ecutrho) in cutoffs.items():
        available = entries.get(element)
        if not available:
            continue
        if element in variants:
            entry = available.get(variants[element])
            if entry is None:
                continue
        else:
            entry = softest_entry(available)
        text = format_pspcod10(entry)
        path = directory / f"{element}.gth"
        if not path.exists() or path.read_text() != text:
            tmp = directory / f".{element}.gth.{os.getpid()}"
            tmp.write_text(text)
            os.replace(tmp, path)
        specs[element] = PseudoSpec(
            element, path.name, float(entry.z_valence), float(ecutwfc), float(ecutrho),
            _sha256_text(text),
        )
    return PseudoFamily("gth-pbe-cp2k", directory, specs)


_UPF_ZVAL = re.compile(r'z_valence\s*=\s*"\s*([-+0-9.EeDd]+)\s*"', re.IGNORECASE)
_UPF1_ZVAL = re.compile(r"^\s*([-+0-9.EeDd]+)\s+Z valence", re.MULTILINE)


def upf_valence(path: Path | str) -> float:
    """Valence charge read from a UPF file header (UPF v1 or v2)."""
    head = Path(path).read_text(errors="replace")[:20000]
    match = _UPF_ZVAL.search(head) or _UPF1_ZVAL.search(head)
    if match is None:
        raise ValueError(f"cannot read the valence charge of {path}")
    return float(match.group(1).replace("D", "E").replace("d", "e"))


def load_upf_family(mapping_file: Path | str) -> PseudoFamily:
    """Load a user UPF family from a JSON mapping file.

    Format::

        {"name": "sssp-efficiency",            # optional
         "pseudo_dir": "/path/to/sssp",        # relative paths: to the mapping file
         "elements": {"Si": {"file": "Si.pbe-n-rrkjus_psl.1.0.0.UPF",
                             "ecutwfc": 30, "ecutrho": 240}, ...}}

    ``ecutrho`` defaults to 4 x ``ecutwfc`` (norm-conserving) when omitted.
    """
    mapping_file = Path(mapping_file)
    data = json.loads(mapping_file.read_text())
    directory = Path(data.get("pseudo_dir", "."))
    if not directory.is_absolute():
        directory = (mapping_file.parent / directory).resolve()
    specs = {}
    for element, item in data["elements"].items():
        path = directory / item["file"]
        if not path.is_file():
            raise FileNotFoundError(f"pseudopotential file for {element} not found: {path}")
        ecutwfc = float(item["ecutwfc"])
        ecutrho = float(item.get("ecutrho", 4.0 * ecutwfc))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        specs[element] = PseudoSpec(
            element, item["file"], upf_valence(path), ecutwfc, ecutrho, digest
        )
    return PseudoFamily(data.get("name", mapping_file.stem), directory, specs)
