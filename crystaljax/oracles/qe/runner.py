"""Running pw.x: argument list (no shell), per-job scratch directory, time limit.

Each run gets a fresh directory under a scratch root. The directory is removed
when the caller reports success (:meth:`PwRun.cleanup`) and kept otherwise
(:meth:`PwRun.keep_failed`), so the input and output of a failed run can be
inspected; its path travels in the result. Only the last ``keep_failed_runs``
failed directories of a scratch root are kept, the oldest removed first. The time
limit kills the whole process group (mpirun and every rank). A directory whose
process died before cleaning up (a SIGKILLed pool worker) is removed when the next
run directory of that scratch root is made (:func:`sweep_orphaned_runs`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from crystaljax.config import check, option

#: file that marks a kept failed run directory (its mtime orders the pruning)
FAILED_MARKER = "FAILED"
#: file that names the process that made a run directory (``<host> <pid>``)
OWNER_FILE = "OWNER"


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """How to launch pw.x.

    Attributes:
      pw_command: the pw.x executable (name on PATH or path).
      mpi_ranks: MPI ranks; 1 runs pw.x directly, more use ``mpirun``.
      threads: OpenMP threads per rank (``OMP_NUM_THREADS``).
      mpirun: the mpirun executable.
      time_limit: wall-clock limit per pw.x run (s).
      scratch_root: parent of the per-run directories (default: the system
        temp dir + ``/crystaljax-qe``).
      keep_on_success: keep the run directory even when the run succeeded.
      keep_failed_runs: failed run directories kept per scratch root (the newest;
        0 keeps none).
    """

    pw_command: str = "pw.x"
    mpi_ranks: int = option(1, ge=1)
    threads: int = option(1, ge=1)
    mpirun: str = "mpirun"
    time_limit: float = option(1800.0, gt=0)
    scratch_root: str | None = None
    keep_on_success: bool = False
    keep_failed_runs: int = option(20, ge=0)

    def __post_init__(self) -> None:
        check(self, "runner")

    def replace(self, **changes) -> "RunnerConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class PwRun:
    """What one pw.x invocation left behind.

    Attributes:
      workdir: the run directory (``pw.in``, ``pw.out``, ``out/``).
      returncode: exit status (``None`` when killed by the time limit or not started).
      timed_out: the time limit was hit and the process group killed.
      seconds: wall time (s).
      output: the text pw.x wrote to stdout and stderr.
      launch_error: why the program could not be started ('' if it was).
    """

    workdir: Path
    returncode: int | None
    timed_out: bool
    seconds: float
    output: str
    launch_error: str = ""

    def cleanup(self) -> None:
        """Remove the run directory (call on success)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def keep_failed(self, limit: int) -> Path | None:
        """Keep the directory of this failed run, and only the ``limit`` newest failed
        ones of its scratch root (:func:`prune_failed_runs`). Returns the directory, or
        ``None`` when it was removed (``limit`` 0)."""
        if limit <= 0:
            self.cleanup()
            return None
        (self.workdir / FAILED_MARKER).write_text(f"{time.time_ns()}\n")
        prune_failed_runs(self.workdir.parent, limit)
        return self.workdir if self.workdir.is_dir() else None


def prune_failed_runs(root: str | Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest failed run directories under ``root``.

    Only directories marked as kept failures (:data:`FAILED_MARKER`, which holds the time
    they were kept, in ns) are touched, so runs still in progress in other workers are
    safe. Returns the removed directories.
    """
    marked = []
    for marker in Path(root).glob(f"*/{FAILED_MARKER}"):
        try:
            text = marker.read_text().strip()
            stamp = int(text) if text.isdigit() else marker.stat().st_mtime_ns
        except FileNotFoundError:  # pruned by another worker meanwhile
            continue
        marked.append((stamp, marker.parent.name, marker.parent))
    marked.sort()
    removed = [path for _, _, path in marked[: max(0, len(marked) - keep)]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def command_line(config: RunnerConfig, input_name: str = "pw.in") -> list[str]:
    """The argument list that runs pw.x on ``input_name`` in the current directory."""
    pw = [config.pw_command, "-input", input_name]
    if config.mpi_ranks <= 1:
        return pw
    return [config.mpirun, "-np", str(config.mpi_ranks), "--bind-to", "none", *pw]


#: Open MPI settings of a single-rank pw.x (and of ld1.x), each kept where the environment
#: sets it: no runtime daemon (``ess_singleton_isolated``) and only the process's own
#: transport (``pml ob1``, ``btl self``) instead of probing network transports (UCX, OFI)
#: at start-up. Measured here (Open MPI 4.1.4): 0.30-0.33 s from process start to pw.x's
#: own clock without them, 0.02-0.04 s with them, per run; a small cell's bulk modulus
#: takes two runs of 2-5 s (docs/DFT.md). Runs with several ranks (``mpirun``) keep the
#: machine's Open MPI configuration: its transports may be what reaches other nodes.
OPENMPI_SINGLE_RANK = {
    "OMPI_MCA_ess_singleton_isolated": "1",
    "OMPI_MCA_pml": "ob1",
    "OMPI_MCA_btl": "self",
}


def run_environment(config: RunnerConfig) -> dict[str, str]:
    """Environment of the pw.x process: OpenMP threads, a single rank's quick Open MPI
    start-up (:data:`OPENMPI_SINGLE_RANK`, where not set already) and OpenMPI-as-root
    switches."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(config.threads)
    if config.mpi_ranks <= 1:
        for key, value in OPENMPI_SINGLE_RANK.items():
            env.setdefault(key, value)
    # Containers often forbid the cross-memory-attach single-copy mechanism.
    env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    return env


def make_workdir(config: RunnerConfig, label: str = "pw") -> Path:
    """Create a fresh run directory under the scratch root, owned by this process
    (:data:`OWNER_FILE`), after removing the orphaned ones (:func:`sweep_orphaned_runs`)."""
    root = Path(config.scratch_root or Path(tempfile.gettempdir()) / "crystaljax-qe")
    root.mkdir(parents=True, exist_ok=True)
    sweep_orphaned_runs(root)
    workdir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
    (workdir / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return workdir


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_orphaned_runs(root: str | Path) -> list[Path]:
    """Remove the run directories under ``root`` whose owner (:data:`OWNER_FILE`) ran on
    this host and no longer exists: a worker killed before it could clean up. Kept failed
    runs (:data:`FAILED_MARKER`), directories of other hosts (a shared scratch root) or of
    live processes, and directories without an owner are left alone. Returns the removed
    directories."""
    host, removed = socket.gethostname(), []
    for owner in Path(root).glob(f"*/{OWNER_FILE}"):
        directory = owner.parent
        try:
            fields = owner.read_text().split()
        except (FileNotFoundError, NotADirectoryError):  # removed by another worker meanwhile
            continue
        if (len(fields) != 2 or fields[0] != host or not fields[1].isdigit()
                or (directory / FAILED_MARKER).exists() or _process_exists(int(fields[1]))):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5.0)
            return
        except subprocess.TimeoutExpired:
            continue


def run_pw(input_text: str, config: RunnerConfig, label: str = "pw",
           prepare: Callable[[Path], None] | None = None) -> PwRun:
    """Run pw.x on ``input_text`` in a new run directory, within the time limit.

    ``prepare(workdir)`` is called before pw.x starts (e.g. to put a starting density in
    place). Never raises for a failing or missing program: the failure is in the
    returned :class:`PwRun` (``launch_error``, ``returncode``, ``timed_out``).
    """
    workdir = make_workdir(config, label)
    (workdir / "pw.in").write_text(input_text)
    if prepare is not None:
        prepare(workdir)
    out_path = workdir / "pw.out"
    start = time.monotonic()
    timed_out = False
    returncode: int | None = None
    launch_error = ""
    with open(out_path, "wb") as out:
        try:
            proc = subprocess.Popen(
                command_line(config),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=run_environment(config),
                start_new_session=True,
            )
        except OSError as exc:
            launch_error = f"cannot start {config.pw_command!r}: {exc}"
        else:
            try:
                returncode = proc.wait(timeout=config.time_limit)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
            except BaseException:
                _kill_group(proc)
                raise
    seconds = time.monotonic() - start
    output = out_path.read_text(errors="replace")
    return PwRun(workdir, returncode, timed_out, seconds, output, launch_error)
