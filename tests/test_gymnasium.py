import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from crystaljax.wrappers import GymnasiumEnv


def test_passes_gymnasium_env_checker():
    env = GymnasiumEnv("density-cubic-mini-small-v0")
    check_env(env, skip_render_check=True)


def test_episode_and_action_validation():
    env = GymnasiumEnv("density-perovskite-small-v0")
    obs, _ = env.reset(seed=3)
    assert obs["focus"].sum() == 1 and obs["action_mask"].dtype == np.int8
    with pytest.raises(ValueError, match=r"\[0, 18\)"):
        env.step(18)
    with pytest.raises(ValueError):
        env.step(1.5)
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(11)  # all oxygen
        assert terminated == (t == 4) and not truncated
    assert info["formula"] == "O2" and info["status"] == 0
    assert reward == pytest.approx(np.exp(-(3.0 - info["property"]) ** 2 / 3.0), rel=1e-5)
    assert info["property"] == pytest.approx(5 * 15.999 / 4.2748**3 * 1.66054, rel=1e-4)
