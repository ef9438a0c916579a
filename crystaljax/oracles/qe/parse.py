"""Reading pw.x output: energies, band edges, eigenvalues, magnetisation, final cell and
positions, failures.

Energies are returned in eV (pw.x prints Ry), lengths in Å, pressure in GPa.
:func:`classify` turns a run into a :class:`~crystaljax.oracles.base.Status`
with a one-line reason; :func:`output_tail` gives the text kept for diagnosis.

A spin-polarised run (``nspin = 2``) prints its band listing in two blocks, ``SPIN UP``
then ``SPIN DOWN``: :attr:`PwOutput.eigenvalues` and :attr:`PwOutput.occupations` stack
them (the up channel's k-points first) and :meth:`PwOutput.channels` splits them.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
from ase.units import Bohr, Ry

from crystaljax.oracles.base import Status
from crystaljax.oracles.qe.runner import PwRun

_FLOAT = r"[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?"
_NUMBER = re.compile(r"-?\d+\.\d+")
_TOTAL_ENERGY = re.compile(rf"^!\s+total energy\s+=\s+({_FLOAT})\s+Ry", re.MULTILINE)
_N_ELECTRONS = re.compile(rf"number of electrons\s+=\s+({_FLOAT})")
_N_ATOMS = re.compile(r"number of atoms/cell\s+=\s+(\d+)")
_HOMO_LUMO = re.compile(
    rf"highest occupied, lowest unoccupied level \(ev\):\s+({_FLOAT})\s+({_FLOAT})"
)
_HOMO = re.compile(rf"highest occupied level \(ev\):\s+({_FLOAT})")
_FERMI = re.compile(rf"the Fermi energy is\s+({_FLOAT})\s+ev")
_PRESSURE = re.compile(rf"P=\s*({_FLOAT})")
_SCF_ACCURACY = re.compile(rf"estimated scf accuracy\s+<\s+({_FLOAT})\s+Ry")
_TOTAL_MAGNETIZATION = re.compile(rf"total magnetization\s+=\s+({_FLOAT})\s+Bohr mag/cell")
_ABSOLUTE_MAGNETIZATION = re.compile(
    rf"absolute magnetization\s+=\s+({_FLOAT})\s+Bohr mag/cell")
_POSITIONS_HEADER = re.compile(r"^ATOMIC_POSITIONS\s*\(?\s*crystal\s*\)?\s*$", re.MULTILINE)
_POSITION_LINE = re.compile(rf"^\s*([A-Z][a-z]?\w*)\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})")
_SPIN_DOWN = "SPIN DOWN"
_RELAX_CONVERGED = ("bfgs converged", "End final coordinates")
_CELL = re.compile(
    rf"CELL_PARAMETERS \((alat=\s*({_FLOAT})|angstrom|bohr)\)\s*\n"
    rf"\s*({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*\n"
    rf"\s*({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*\n"
    rf"\s*({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})"
)
_ERROR_BLOCK = re.compile(r"Error in routine\s+(\S+)\s*\(\s*-?\d+\s*\):\s*\n\s*(.+)")
_SCF_FAILED = "convergence NOT achieved"
_CHARGE_WRONG = "charge is wrong"
_JOB_DONE = "JOB DONE"
_MAX_STEPS = "The maximum number of steps has been reached"
#: pw.x's exit status when a relaxation stops at ``nstep`` (not a failure here).
EXIT_MAX_STEPS = 3
_END_MARKERS = ("End of self-consistent calculation", "End of band structure calculation")

KBAR_TO_GPA = 0.1


@dataclasses.dataclass
class PwOutput:
    """Quantities read from one pw.x output (``None`` where absent).

    Attributes:
      total_energy: last converged total energy (eV).
      n_atoms: atoms in the cell.
      n_electrons: valence electrons.
      homo, lumo: highest occupied / lowest unoccupied level (eV), fixed occupations.
      fermi: Fermi energy (eV), smearing.
      pressure: last pressure (GPa).
      eigenvalues: Kohn-Sham eigenvalues of the last SCF, shape (n_k, n_bands), eV.
      occupations: their occupations (0..1, printed with smearing and ``verbosity
        high``), same shape; ``None`` when not printed.
      cell: last printed cell (rows, Å), e.g. after a vc-relax step.
      job_done: pw.x reached its normal end.
      nspin: 2 when the band listing has spin-up and spin-down blocks, else 1.
      magnetization: last total magnetisation (Bohr magnetons per cell; spin-polarised
        runs only).
      absolute_magnetization: last absolute magnetisation (Bohr magnetons per cell).
      positions: last printed fractional atomic positions (``ATOMIC_POSITIONS (crystal)``
        of a relaxation), shape (n_atoms, 3); ``None`` when not printed.
      relax_converged: a relaxation reached its convergence criteria (BFGS converged).
      scf_accuracy: pw.x's last estimated SCF accuracy (Ry per cell), converged or not.
    """

    total_energy: float | None = None
    n_atoms: int | None = None
    n_electrons: float | None = None
    homo: float | None = None
    lumo: float | None = None
    fermi: float | None = None
    pressure: float | None = None
    eigenvalues: np.ndarray | None = None
    occupations: np.ndarray | None = None
    cell: np.ndarray | None = None
    job_done: bool = False
    nspin: int = 1
    magnetization: float | None = None
    absolute_magnetization: float | None = None
    positions: np.ndarray | None = None
    relax_converged: bool = False
    scf_accuracy: float | None = None

    @property
    def energy_per_atom(self) -> float | None:
        """Total energy per atom (eV/atom)."""
        if self.total_energy is None or not self.n_atoms:
            return None
        return self.total_energy / self.n_atoms

    def channels(self, values: np.ndarray | None = None) -> list[np.ndarray]:
        """``values`` (default :attr:`eigenvalues`; shape (nspin x n_k, n_bands)) as one
        (n_k, n_bands) array per spin channel: ``[all]`` or ``[up, down]``; ``[]`` when
        absent."""
        values = self.eigenvalues if values is None else values
        if values is None:
            return []
        if self.nspin == 2 and len(values) % 2 == 0:
            half = len(values) // 2
            return [values[:half], values[half:]]
        return [values]


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def _f(s: str) -> float:
    return float(s.replace("D", "E").replace("d", "e"))


def _listing(text: str, occupations: bool = False) -> tuple[list[list[float]], int | None]:
    """The k-point blocks of the last band listing (eigenvalues, or with ``occupations``
    the occupation numbers), and the index of the first spin-down block (None: no spin)."""
    start = max(text.rfind(m) for m in _END_MARKERS)
    if start < 0:
        return [], None
    blocks: list[list[float]] = []
    current: list[float] | None = None
    down: int | None = None
    for line in text[start:].splitlines()[1:]:
        stripped = line.strip()
        opens = (stripped.startswith("occupation numbers") if occupations else
                 stripped.startswith("k =") and "bands (ev)" in stripped)
        if opens:
            current = []
            blocks.append(current)
        elif re.search(r"[A-Za-z]", stripped):
            # "occupation numbers" (verbosity high) ends a block; band edges end the listing.
            current = None
            if _SPIN_DOWN in stripped:
                down = len(blocks)
            if stripped.startswith(("highest", "the Fermi", "the spin", "!", "total energy")):
                break
        elif current is not None:
            current.extend(float(x) for x in _NUMBER.findall(stripped))
    if down is not None:  # count only the non-empty blocks before it
        down = sum(1 for b in blocks[:down] if b)
    return [b for b in blocks if b], down


def _array(blocks: list[list[float]]) -> np.ndarray | None:
    if not blocks or len({len(b) for b in blocks}) != 1:
        return None
    return np.asarray(blocks, dtype=float)


def parse_eigenvalues(text: str) -> np.ndarray | None:
    """Eigenvalues (eV) of the last band listing, shape (nspin x n_k, n_bands): with
    spin, the spin-up k-points then the spin-down ones."""
    return _array(_listing(text)[0])


def parse_occupations(text: str) -> np.ndarray | None:
    """Occupations of the last band listing, shape (nspin x n_k, n_bands) (``None`` if
    not printed)."""
    return _array(_listing(text, occupations=True)[0])


def parse_nspin(text: str) -> int:
    """2 when the last band listing has a spin-down block that halves it, else 1."""
    blocks, down = _listing(text)
    return 2 if down is not None and blocks and 2 * down == len(blocks) else 1


def parse_positions(text: str) -> np.ndarray | None:
    """The last ``ATOMIC_POSITIONS (crystal)`` block pw.x printed (a relaxation step),
    fractional, shape (n_atoms, 3); ``None`` when there is none."""
    headers = list(_POSITIONS_HEADER.finditer(text))
    if not headers:
        return None
    rows = []
    for line in text[headers[-1].end():].lstrip("\n").splitlines():
        m = _POSITION_LINE.match(line)
        if m is None:
            break
        rows.append([_f(m.group(i)) for i in (2, 3, 4)])
    return np.asarray(rows, dtype=float) if rows else None


def parse_output(text: str) -> PwOutput:
    """Everything :class:`PwOutput` holds, from the text of a pw.x output."""
    out = PwOutput(job_done=_JOB_DONE in text)
    if m := _last(_TOTAL_ENERGY, text):
        out.total_energy = _f(m.group(1)) * Ry
    if m := _N_ATOMS.search(text):
        out.n_atoms = int(m.group(1))
    if m := _N_ELECTRONS.search(text):
        out.n_electrons = _f(m.group(1))
    if m := _last(_HOMO_LUMO, text):
        out.homo, out.lumo = _f(m.group(1)), _f(m.group(2))
    elif m := _last(_HOMO, text):
        out.homo = _f(m.group(1))
    if m := _last(_FERMI, text):
        out.fermi = _f(m.group(1))
    if m := _last(_PRESSURE, text):
        out.pressure = _f(m.group(1)) * KBAR_TO_GPA
    if m := _last(_SCF_ACCURACY, text):
        out.scf_accuracy = _f(m.group(1))
    if m := _last(_CELL, text):
        rows = np.array([_f(m.group(i)) for i in range(3, 12)]).reshape(3, 3)
        unit = m.group(1)
        if unit.startswith("alat"):
            rows = rows * _f(m.group(2)) * Bohr
        elif unit == "bohr":
            rows = rows * Bohr
        out.cell = rows
    out.eigenvalues = parse_eigenvalues(text)
    out.occupations = parse_occupations(text)
    out.nspin = parse_nspin(text)
    if m := _last(_TOTAL_MAGNETIZATION, text):
        out.magnetization = _f(m.group(1))
    if m := _last(_ABSOLUTE_MAGNETIZATION, text):
        out.absolute_magnetization = _f(m.group(1))
    out.positions = parse_positions(text)
    out.relax_converged = any(marker in text for marker in _RELAX_CONVERGED)
    if out.occupations is not None and (
            out.eigenvalues is None or out.occupations.shape != out.eigenvalues.shape):
        out.occupations = None
    return out


def output_tail(text: str, lines: int = 40, chars: int = 4000) -> str:
    """The last ``lines`` lines (at most ``chars`` characters) of an output."""
    tail = "\n".join(text.splitlines()[-lines:])
    return tail[-chars:]


def classify(run: PwRun, parsed: PwOutput | None = None) -> tuple[Status, str]:
    """The status of a finished run and a one-line reason ('' when OK).

    Order: could not start -> CRASH; time limit -> TIMEOUT; SCF not converged;
    'charge is wrong'; a pw.x error block -> CRASH; non-zero exit -> CRASH
    (except exit 3 of a relaxation stopped at ``nstep``, which is the intended
    end of a one-step vc-relax); no normal end or no total energy -> PARSE_ERROR.
    """
    text = run.output
    if run.launch_error:
        return Status.CRASH, run.launch_error
    if run.timed_out:
        return Status.TIMEOUT, f"pw.x killed after the time limit ({run.seconds:.0f} s)"
    if _SCF_FAILED in text:
        m = re.search(r"convergence NOT achieved[^\n]*", text)
        return Status.SCF_NOT_CONVERGED, (m.group(0).strip() if m else "SCF not converged")
    if _CHARGE_WRONG in text:
        return Status.CHARGE_WRONG, "pw.x: charge is wrong"
    if m := _ERROR_BLOCK.search(text):
        return Status.CRASH, f"pw.x error in {m.group(1)}: {m.group(2).strip()}"
    max_steps = run.returncode == EXIT_MAX_STEPS and _MAX_STEPS in text
    if run.returncode != 0 and not max_steps:
        return Status.CRASH, f"pw.x exited with status {run.returncode}"
    parsed = parsed if parsed is not None else parse_output(text)
    if not parsed.job_done:
        return Status.PARSE_ERROR, "pw.x output has no normal end (JOB DONE missing)"
    if parsed.total_energy is None:
        return Status.PARSE_ERROR, "no total energy in pw.x output"
    return Status.OK, ""
