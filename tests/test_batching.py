"""only_finished: an expensive in-graph oracle runs only when an env of the batch finished,
under jit, vmap and nested vmaps (the evaluations are counted by a host callback)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crystaljax.oracles.batching import only_finished


@pytest.fixture(params=["vmap", "map"])
def counted(request):
    calls = []

    def fn(x, y):
        jax.debug.callback(lambda: calls.append(1))
        return x * 2.0 + y, jnp.int32(0)

    fill = lambda: (jnp.float32(jnp.nan), jnp.int32(-1))  # noqa: E731
    return only_finished(fn, fill, request.param), calls


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


def test_map_batching_runs_one_crystal_at_a_time_and_keeps_real_branches():
    """Under ``map`` the function sees one crystal (no batch axis), so a ``lax.cond`` inside
    stays a branch: only the taken branch's callback fires, per crystal."""
    taken = []

    def fn(x):
        def big(v):
            jax.debug.callback(lambda: taken.append("big"))
            return v * 10.0

        def small(v):
            jax.debug.callback(lambda: taken.append("small"))
            return v + 0.5

        assert jnp.shape(x) == ()
        return jax.lax.cond(x > 2.0, big, small, x)

    call = only_finished(fn, lambda: jnp.float32(jnp.nan), "map")
    f = jax.jit(jax.vmap(jax.vmap(call)))
    x = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
    out = f(jnp.ones((2, 3), bool), x)
    jax.block_until_ready(out)
    np.testing.assert_allclose(np.asarray(out), [[0.5, 1.5, 2.5], [30.0, 40.0, 50.0]])
    assert sorted(taken) == ["big"] * 3 + ["small"] * 3


def test_unknown_batching_is_refused():
    with pytest.raises(ValueError, match="batching"):
        only_finished(lambda x: x, lambda: 0.0, "pmap")


def test_vmap_chunks_see_at_most_chunk_crystals_and_give_the_unchunked_values():
    """``vmap`` with ``chunk``: a batch of 2 x 7 = 14 crystals runs as a loop over 3 vmapped
    chunks of 4 (and the remainder of 2, vmapped apart), nested vmaps flattened, and the
    values equal the unchunked call's."""
    seen = []

    def fn(x):
        return x * 3.0 - 1.0

    def traced(x):
        seen.append(jnp.shape(x))
        return fn(x)

    fill = lambda: jnp.float32(jnp.nan)  # noqa: E731
    x = jnp.arange(14, dtype=jnp.float32).reshape(2, 7)
    finished = jnp.ones((2, 7), bool)
    whole = jax.jit(jax.vmap(jax.vmap(only_finished(fn, fill, "vmap"))))(finished, x)
    call = only_finished(traced, fill, "vmap", chunk=4)
    chunked = jax.vmap(jax.vmap(call))
    out = jax.jit(chunked)(finished, x)
    assert "length=3" in str(jax.make_jaxpr(chunked)(finished, x))  # the loop over chunks
    np.testing.assert_allclose(np.asarray(out), np.asarray(whole))
    np.testing.assert_allclose(np.asarray(out), np.asarray(x) * 3.0 - 1.0)
    assert seen and all(s == () for s in seen)  # fn itself sees one crystal (vmapped inside)


def test_vmap_chunk_bounds_the_compiled_memory():
    """The point of ``chunk``: the compiled program's temporary memory grows with the chunk,
    not the batch (a function whose intermediates are 64 KiB per crystal)."""
    def fn(x):
        big = jnp.outer(jnp.arange(128.0) + x, jnp.arange(128.0))  # 64 KiB
        return jnp.sum(jnp.sin(big) ** 2)

    fill = lambda: jnp.float32(jnp.nan)  # noqa: E731
    x = jnp.arange(1024, dtype=jnp.float32)
    done = jnp.ones(1024, bool)

    def temp_bytes(chunk):
        f = jax.jit(jax.vmap(only_finished(fn, fill, "vmap", chunk=chunk)))
        return f.lower(done, x).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(32) * 8 < temp_bytes(0)


def test_bad_chunk_is_refused():
    with pytest.raises(ValueError, match="chunk"):
        only_finished(lambda x: x, lambda: 0.0, "vmap", chunk=-1)
