"""Shared tiny crystals and settings of the QE tests (real pw.x, low cutoffs)."""

from __future__ import annotations

import concurrent.futures
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


def fcc(a: float, element: str) -> Structure:
    """One-atom fcc primitive cell (Å)."""
    h = a / 2
    return Structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), [element], [[0, 0, 0]])


def bcc(a: float, element: str) -> Structure:
    """One-atom bcc primitive cell (Å)."""
    h = a / 2
    return Structure(Lattice([[-h, h, h], [h, -h, h], [h, h, -h]]), [element], [[0, 0, 0]])


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


class InlineExecutor:
    """An executor that runs each job in this process when it is submitted (for tests of
    the oracle's bookkeeping: no process start-up)."""

    max_workers = 1

    def __init__(self) -> None:
        self.submitted = 0
        self.shut_down = 0

    def submit(self, fn, *args, **kwargs):
        self.submitted += 1
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        self.shut_down += 1


class BrokenExecutor(InlineExecutor):
    """Every job fails in the executor (a worker died)."""

    def submit(self, fn, *args, **kwargs):
        self.submitted += 1
        future = concurrent.futures.Future()
        future.set_exception(RuntimeError("worker died"))
        return future
