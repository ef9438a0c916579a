"""The persistent compilation cache crystaljax turns on at import (in fresh processes,
since the test session itself sets JAX_COMPILATION_CACHE_DIR)."""

import json
import os
import subprocess
import sys

PROBE = """
import json, jax, jax.numpy as jnp
import crystaljax
f = jax.jit(lambda x: jnp.sin(x) @ x.T)
f(jnp.ones((8, 8))).block_until_ready()
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir}))
"""


def run_probe(tmp_path, **env_vars):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "CRYSTALJAX_COMPILATION_CACHE")}
    env.update(CRYSTALJAX_CACHE_DIR=str(tmp_path / "cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **env_vars)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["dir"]


def test_on_by_default_under_the_crystaljax_cache_folder(tmp_path):
    folder = tmp_path / "cache" / "xla"
    assert run_probe(tmp_path) == str(folder)
    stored = sorted(p.name for p in folder.iterdir())
    assert stored, "nothing was written to the compilation cache"
    # a second process finds the program there and stores nothing new
    assert run_probe(tmp_path) == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == stored


def test_switched_off_by_the_environment(tmp_path):
    assert run_probe(tmp_path, CRYSTALJAX_COMPILATION_CACHE="0") is None
    assert not (tmp_path / "cache" / "xla").exists()


def test_a_folder_the_user_chose_is_kept(tmp_path):
    mine = tmp_path / "mine"
    assert run_probe(tmp_path, JAX_COMPILATION_CACHE_DIR=str(mine)) == str(mine)
    assert not (tmp_path / "cache" / "xla").exists()


def test_an_unwritable_folder_warns_and_leaves_it_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "CRYSTALJAX_COMPILATION_CACHE")}
    env["CRYSTALJAX_CACHE_DIR"] = str(blocker)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])["dir"] is None
    assert "compilation cache off" in out.stderr
