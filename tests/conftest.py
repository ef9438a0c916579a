import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import jax  # noqa: E402
import pytest  # noqa: E402

import crystaljax  # noqa: E402


@pytest.fixture(scope="session")
def perovskite_env():
    return crystaljax.make("density-perovskite-small-v0")


@pytest.fixture
def key():
    return jax.random.PRNGKey(42)


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
