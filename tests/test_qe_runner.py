"""Running pw.x: kept directories of failed runs are bounded (the newest N stay); the
directories of processes that died without cleaning up are swept; a single rank starts
Open MPI locally unless the environment says otherwise."""

from __future__ import annotations

import pytest
from qe_helpers import fake_pw

from crystaljax.config import ConfigError
from crystaljax.oracles.qe.runner import (
    FAILED_MARKER,
    OPENMPI_SINGLE_RANK,
    OWNER_FILE,
    RunnerConfig,
    make_workdir,
    prune_failed_runs,
    run_environment,
    run_pw,
    sweep_orphaned_runs,
)


def test_only_the_newest_failed_run_directories_are_kept(tmp_path):
    scratch = tmp_path / "scratch"
    config = RunnerConfig(pw_command=fake_pw(tmp_path, "crash"), time_limit=30.0,
                          scratch_root=str(scratch), keep_failed_runs=3)
    running = scratch / "in-progress"  # another worker's run: never pruned
    running.mkdir(parents=True)
    kept = []
    for i in range(5):
        run = run_pw(f"! run {i}\n", config, label=f"fail{i}")
        assert run.returncode == 1
        kept.append(run.keep_failed(config.keep_failed_runs))
    assert all(path is not None for path in kept)
    left = sorted(p.name for p in scratch.iterdir() if (p / FAILED_MARKER).is_file())
    assert left == sorted(p.name for p in kept[-3:])  # oldest removed first
    assert all((p / "pw.in").is_file() for p in kept[-3:])
    assert running.is_dir()
    assert prune_failed_runs(scratch, 1) == sorted(kept[-3:-1], key=lambda p: kept.index(p))
    none_kept = run_pw("", config.replace(keep_failed_runs=0), label="gone")
    assert none_kept.keep_failed(0) is None and not none_kept.workdir.exists()


def test_runner_options_are_checked():
    assert RunnerConfig().keep_failed_runs == 20
    with pytest.raises(ConfigError, match="keep_failed_runs must be >= 0"):
        RunnerConfig(keep_failed_runs=-1)
    with pytest.raises(ConfigError, match="time_limit must be > 0"):
        RunnerConfig(time_limit=0)


def test_the_directories_of_dead_processes_are_swept(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    scratch = tmp_path / "scratch"
    config = RunnerConfig(scratch_root=str(scratch))
    mine = make_workdir(config, "mine")
    assert (mine / OWNER_FILE).read_text().split() == [socket.gethostname(), str(os.getpid())]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # exited: a worker SIGKILLed mid-run

    def directory(name, owner, failed=False):
        path = scratch / name
        (path / "out").mkdir(parents=True)
        if owner is not None:
            (path / OWNER_FILE).write_text(owner)
        if failed:
            (path / FAILED_MARKER).write_text("1\n")
        return path

    orphan = directory("pw-orphan", f"{socket.gethostname()} {dead_pid}\n")
    kept_failure = directory("pw-failed", f"{socket.gethostname()} {dead_pid}\n", failed=True)
    elsewhere = directory("pw-other-host", f"not-{socket.gethostname()} {dead_pid}\n")
    no_owner = directory("pw-older", None)
    garbled = directory("pw-garbled", "?\n")
    # the next run directory sweeps the orphan only
    fresh = make_workdir(config, "next")
    assert not orphan.exists()
    assert all(p.is_dir() for p in (mine, fresh, kept_failure, elsewhere, no_owner, garbled))
    assert sweep_orphaned_runs(scratch) == []


def test_a_single_rank_starts_open_mpi_locally_unless_the_environment_says_otherwise(
        monkeypatch):
    for key in OPENMPI_SINGLE_RANK:
        monkeypatch.delenv(key, raising=False)
    env = run_environment(RunnerConfig(threads=2))
    assert env["OMP_NUM_THREADS"] == "2"
    assert {key: env[key] for key in OPENMPI_SINGLE_RANK} == OPENMPI_SINGLE_RANK
    assert env["OMPI_MCA_pml"] == "ob1" and env["OMPI_MCA_btl"] == "self"
    # several ranks: the machine's Open MPI configuration chooses the transports
    env = run_environment(RunnerConfig(mpi_ranks=2))
    assert not set(OPENMPI_SINGLE_RANK) & set(env)
    assert env["OMPI_MCA_btl_vader_single_copy_mechanism"] == "none"
    monkeypatch.setenv("OMPI_MCA_pml", "ucx")  # a user's own choice is kept
    monkeypatch.setenv("OMPI_MCA_btl", "self,tcp")
    env = run_environment(RunnerConfig())
    assert env["OMPI_MCA_pml"] == "ucx" and env["OMPI_MCA_btl"] == "self,tcp"
    assert env["OMPI_MCA_ess_singleton_isolated"] == "1"
