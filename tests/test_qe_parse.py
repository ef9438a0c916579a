"""pw.x output parsing and failure classification."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystaljax.oracles.base import Status
from crystaljax.oracles.qe.parse import classify, output_tail, parse_eigenvalues, parse_output
from crystaljax.oracles.qe.runner import PwRun

SCF_OUTPUT = """
     number of atoms/cell      =            2
     number of electrons       =         8.00
     End of self-consistent calculation

          k = 0.0000 0.0000 0.0000 (   749 PWs)   bands (ev):

   -40.1234-38.5000  -1.2000   4.5000   4.5000
     4.5000   9.1000  10.2000

          k =-0.2500 0.2500-0.2500 (   760 PWs)   bands (ev):

   -39.9000 -38.0000  -0.5000   3.9000   4.0000
     4.1000  10.1000  11.0000

     highest occupied, lowest unoccupied level (ev):     4.5000     9.1000

!    total energy              =     -31.50000000 Ry
          total   stress  (Ry/bohr**3)                   (kbar)     P=      -12.50
CELL_PARAMETERS (alat= 10.00000000)
   0.000000000   0.500000000   0.500000000
   0.500000000   0.000000000   0.500000000
   0.500000000   0.500000000   0.000000000

   JOB DONE.
"""


def _run(text: str, returncode: int | None = 0, timed_out: bool = False) -> PwRun:
    return PwRun(Path("/nonexistent"), returncode, timed_out, 1.0, text)


def test_parse_scf_output():
    out = parse_output(SCF_OUTPUT)
    assert out.n_atoms == 2 and out.n_electrons == 8.0
    assert out.total_energy == pytest.approx(-31.5 * 13.605693, rel=1e-6)
    assert out.energy_per_atom == pytest.approx(out.total_energy / 2)
    assert (out.homo, out.lumo) == (4.5, 9.1)
    assert out.pressure == pytest.approx(-1.25)
    assert out.eigenvalues.shape == (2, 8)
    assert out.eigenvalues[0, 0] == -40.1234 and out.eigenvalues[0, 1] == -38.5
    bohr = 0.529177
    assert out.cell[0, 1] == pytest.approx(5.0 * bohr, rel=1e-4)
    assert classify(_run(SCF_OUTPUT)) == (Status.OK, "")


def test_occupation_numbers_are_not_eigenvalues():
    text = SCF_OUTPUT.replace(
        "   4.5000   9.1000  10.2000\n",
        "   4.5000   9.1000  10.2000\n\n     occupation numbers\n   1.0000 1.0000 1.0000 1.0000"
        "\n   1.0000 0.0000 0.0000 0.0000\n", 1)
    assert parse_eigenvalues(text).shape == (2, 8)


@pytest.mark.parametrize("text, code, status", [
    ("convergence NOT achieved after 300 iterations: stopping\n JOB DONE.", 0,
     Status.SCF_NOT_CONVERGED),
    (" Error in routine electrons (1):\n charge is wrong\n", 1, Status.CHARGE_WRONG),
    (" Error in routine cdiaghg (3):\n S matrix not positive definite\n", 1, Status.CRASH),
    ("!    total energy = -1.0 Ry\n JOB DONE.\n", 139, Status.CRASH),
    ("!    total energy              =     -1.0 Ry\n", 0, Status.PARSE_ERROR),
    ("garbage\n JOB DONE.\n", 0, Status.PARSE_ERROR),
    ("", 0, Status.PARSE_ERROR),
])
def test_failure_classes(text, code, status):
    got, reason = classify(_run(text, code))
    assert got == status and reason


def test_time_limit_and_launch_errors():
    assert classify(_run("", None, timed_out=True))[0] == Status.TIMEOUT
    run = PwRun(Path("/x"), None, False, 0.0, "", launch_error="cannot start 'pw.x'")
    assert classify(run) == (Status.CRASH, "cannot start 'pw.x'")


def test_relaxation_stopped_at_nstep_is_not_a_crash():
    text = SCF_OUTPUT.replace("   JOB DONE.", "     The maximum number of steps has been reached.\n"
                              "   JOB DONE.")
    assert classify(_run(text, 3))[0] == Status.OK
    assert classify(_run(SCF_OUTPUT, 3))[0] == Status.CRASH


def test_output_tail_is_bounded():
    text = "\n".join(f"line {i}" for i in range(1000))
    tail = output_tail(text, lines=10)
    assert tail.splitlines() == [f"line {i}" for i in range(990, 1000)]
    assert len(output_tail("x" * 10000, chars=100)) == 100


def test_the_last_estimated_scf_accuracy_is_read_converged_or_not():
    text = ("     estimated scf accuracy    <       0.00000017 Ry\n"
            "     estimated scf accuracy    <          9.0E-13 Ry\n"
            "     convergence NOT achieved after 100 iterations: stopping\n")
    assert parse_output(text).scf_accuracy == pytest.approx(9.0e-13)
    assert parse_output("estimated scf accuracy < ******** Ry").scf_accuracy is None
    assert parse_output("JOB DONE").scf_accuracy is None
