"""JAX's persistent compilation cache, on by default under the crystaljax cache folder.

A training chunk takes tens of seconds to compile on a CPU; with the cache a second run
of the same config (same shapes, same XLA flags, same jax) loads the compiled program in
about a second. crystaljax turns the cache on when it is imported, unless

* ``CRYSTALJAX_COMPILATION_CACHE=0`` (or ``off``/``false``/``no``) is set, or
* the user already chose a folder (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.jax_compilation_cache_dir``), which is then left as it is.

The folder is ``$CRYSTALJAX_CACHE_DIR/xla`` (default ``~/.cache/crystaljax/xla``).
Programs that compile in under a second are not stored (jax's default threshold).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from crystaljax.paths import default_cache_dir

#: environment variable that turns the default cache off
ENV_SWITCH = "CRYSTALJAX_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")


def compilation_cache_dir() -> Path:
    """The folder crystaljax uses by default: ``default_cache_dir() / 'xla'``."""
    return default_cache_dir() / "xla"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Store compiled XLA programs in ``path`` (default :func:`compilation_cache_dir`)
    and reuse them in later processes. Returns the folder."""
    folder = Path(path) if path is not None else compilation_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder


def active_compilation_cache() -> str | None:
    """The folder jax caches compiled programs in now, or None when it caches none."""
    return jax.config.jax_compilation_cache_dir or None


def enable_default_compilation_cache() -> Path | None:
    """What importing crystaljax does (see the module docstring). Returns the folder in
    use, or None when the cache is off. Never raises: a folder that cannot be created
    leaves the cache off with a warning."""
    if os.environ.get(ENV_SWITCH, "").strip().lower() in _OFF:
        return None
    current = active_compilation_cache()
    if current:
        return Path(current)
    try:
        return enable_compilation_cache()
    except OSError as exc:
        import warnings

        warnings.warn(f"crystaljax: compilation cache off, cannot create "
                      f"{compilation_cache_dir()}: {exc}", stacklevel=2)
        return None


__all__ = ["ENV_SWITCH", "active_compilation_cache", "compilation_cache_dir",
           "enable_compilation_cache", "enable_default_compilation_cache"]
