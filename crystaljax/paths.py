"""Where crystaljax keeps files between runs."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$CRYSTALJAX_CACHE_DIR`` or ``~/.cache/crystaljax`` (DFT results, generated
    pseudopotentials, compiled XLA programs live below it)."""
    env = os.environ.get("CRYSTALJAX_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "crystaljax"


__all__ = ["default_cache_dir"]
