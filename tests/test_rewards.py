import jax.numpy as jnp
import numpy as np
import pytest

from crystaljax.rewards import RewardParams, check_target, reward


def params(target, penalty, beta=1.0, floor=-5.0):
    return RewardParams(jnp.float32(target), jnp.float32(beta), jnp.float32(floor),
                        jnp.float32(penalty))


def test_density_reward_matches_crystalgym():
    p = np.array([2.0, 3.0, 4.5])
    got = reward("density", jnp.asarray(p), jnp.zeros(3, jnp.int32), params(3.0, -1.0))
    np.testing.assert_allclose(got, np.exp(-((3.0 - p) ** 2) / 3.0), rtol=1e-6)


def test_band_gap_reward_clips_negative_gap():
    got = reward("band_gap", jnp.asarray([-0.5, 1.12, 2.0]), jnp.zeros(3, jnp.int32),
                 params(1.12, -1.0))
    np.testing.assert_allclose(got, np.exp(-np.array([1.12, 0.0, 0.88]) ** 2), rtol=1e-6)


def test_bulk_modulus_reward_floor_and_failure_penalty():
    got = reward("bulk_modulus", jnp.asarray([300.0, 150.0, 5000.0, 250.0]),
                 jnp.asarray([0, 0, 0, 1]), params(300.0, -5.0))
    np.testing.assert_allclose(got, [0.0, -0.5, -5.0, -5.0], rtol=1e-6)


def test_failure_and_nan_get_penalty():
    got = reward("density", jnp.asarray([jnp.nan, 3.0]), jnp.asarray([0, 4]), params(3.0, -1.0))
    np.testing.assert_allclose(got, [-1.0, -1.0])


@pytest.mark.parametrize("name,target", [("density", -1.0), ("density", 0.0),
                                         ("bulk_modulus", -300.0), ("band_gap", -0.1)])
def test_target_of_wrong_sign_raises(name, target):
    with pytest.raises(ValueError, match="target for"):
        check_target(name, target)
    assert check_target("band_gap", 0.0) == 0.0
