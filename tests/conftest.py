"""Test-session set-up: XLA tuned for compile time, one persistent compilation cache per
run (shared by the xdist workers and by the subprocesses the tests start), and the tests
that share the trained probe agents kept on one worker."""

import os
import tempfile
import uuid

# The suite is dominated by compiling small programs that then run for seconds: LLVM's
# expensive passes cost more compile time than they save at run time here.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1 "
                      "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
# Identical programs compiled by different tests (or by a script a test runs) are compiled
# once per test run. The folder is new for every run, so no run reuses another's programs.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or os.environ.setdefault(
    "CRYSTALJAX_TEST_RUN", uuid.uuid4().hex[:12])
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"crystaljax-test-xla-{_RUN}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

import crystaljax  # noqa: E402


@pytest.fixture(scope="session")
def perovskite_env():
    return crystaljax.make("density-perovskite-small-v0")


@pytest.fixture
def key():
    return jax.random.PRNGKey(42)


def _probe_agent(item) -> str:
    """The probe agent a test uses: its ``name`` parameter, else the agent its name says."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "name" in callspec.params:
        return callspec.params["name"]
    return next((agent for agent in ("rainbow", "dqn", "ppo", "sac") if agent in item.name), "all")


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (``--dist loadgroup``) the tests that use one trained probe agent
    run on one worker, so each agent is trained once per run (not once per worker), and
    the four agents' groups spread over the workers. A test that uses an agent its name
    does not say carries its own ``xdist_group`` mark."""
    for item in items:
        if "probe_run" in getattr(item, "fixturenames", ()) and not any(
                item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(f"probe-{_probe_agent(item)}"))


@pytest.fixture(scope="session")
def probe_run():
    """``probe_run(name) -> ProbeRun``: agent ``name`` trained on the probe env with its
    PROBE_CONFIGS entry (two seeds vmapped), once per session and shared by every test."""
    from crystaljax.testing.agents import train_probe

    runs = {}

    def get(name):
        if name not in runs:
            runs[name] = train_probe(name)
        return runs[name]

    return get


@pytest.fixture
def isolated_cache_dir(tmp_path, monkeypatch):
    """A fresh ``CRYSTALJAX_CACHE_DIR`` (no cached results) that shares this machine's
    generated pseudopotentials: they are generated once per machine (about 30 s for the
    PAW family), not once per test."""
    from crystaljax.oracles.qe.ld1 import ld1_store

    store = ld1_store()
    store.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "crystaljax-home"
    (home / "pseudos").mkdir(parents=True)
    (home / "pseudos" / "ld1").symlink_to(store, target_is_directory=True)
    monkeypatch.setenv("CRYSTALJAX_CACHE_DIR", str(home))
    return home
