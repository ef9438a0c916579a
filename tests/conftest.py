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
