"""only_finished: an expensive in-graph oracle runs only when an env of the batch finished,
under jit, vmap and nested vmaps (the evaluations are counted by a host callback)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crystaljax.oracles.batching import only_finished


@pytest.fixture
def counted():
    calls = []

    def fn(x, y):
        jax.debug.callback(lambda: calls.append(1))
        return x * 2.0 + y, jnp.int32(0)

    fill = lambda: (jnp.float32(jnp.nan), jnp.int32(-1))  # noqa: E731
    return only_finished(fn, fill), calls


@pytest.mark.parametrize("shape", [(), (4,), (3, 4)])
def test_skipped_when_nothing_finished_and_exact_when_something_did(counted, shape):
    call, calls = counted
    f = call
    for _ in shape:
        f = jax.vmap(f, (0, 0, None))
    f = jax.jit(f)
    x = jnp.arange(np.prod(shape, dtype=int), dtype=jnp.float32).reshape(shape)
    value, status = f(jnp.zeros(shape, bool), x, 1.0)
    jax.block_until_ready(value)
    assert calls == []
    assert np.isnan(np.asarray(value)).all() and (np.asarray(status) == -1).all()
    finished = jnp.zeros(x.size, bool).at[x.size - 1].set(True).reshape(shape)
    value, status = f(finished, x, 1.0)
    jax.block_until_ready(value)
    assert len(calls) >= 1
    expected = np.asarray(x) * 2 + 1
    np.testing.assert_allclose(np.asarray(value), expected)  # every env computed when any did
    assert (np.asarray(status) == 0).all()
