"""GTH pseudopotentials: CP2K's data files in, ABINIT ``pspcod = 10`` files out.

The GTH-PBE parameters come from Debian's ``cp2k-data`` (``GTH_POTENTIALS`` and
``POTENTIAL_UZH`` in ``/usr/share/cp2k``); :func:`format_pspcod10` writes one entry as
the analytic GTH file that pw.x reads when the file name ends in ``.gth``. Nothing is
downloaded. Families of such files are built in :mod:`crystaljax.oracles.qe.family`.
"""

from __future__ import annotations

import dataclasses
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


__all__ = ["CP2K_DATA", "CP2K_GTH_FILES", "GTHChannel", "GTHEntry", "format_pspcod10",
           "parse_cp2k_gth", "softest_entry"]
