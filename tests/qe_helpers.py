"""Shared tiny crystals and settings of the QE tests (real pw.x, low cutoffs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

FAKE_PW = str(Path(__file__).parent / "fake_pw" / "pw.x")

requires_pw = pytest.mark.skipif(shutil.which("pw.x") is None, reason="pw.x not installed")


def rocksalt(a: float, cation: str, anion: str) -> Structure:
    """Two-site rock-salt primitive cell, conventional lattice constant ``a`` (Å)."""
    lattice = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lattice, [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def diamond(a: float, element: str = "Si") -> Structure:
    """Two-site diamond primitive cell (Å)."""
    lattice = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lattice, [element, element], [[0, 0, 0], [0.25, 0.25, 0.25]])


def fake_pw(directory: Path, mode: str) -> str:
    """Path of a fake pw.x that fails in ``mode`` (a symlink named ``pw-<mode>.x``)."""
    link = Path(directory) / f"pw-{mode}.x"
    if not link.exists():
        link.symlink_to(FAKE_PW)
    return str(link)


def alive(pid: int) -> bool:
    """A process exists and is not a zombie (an unreaped orphan counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
