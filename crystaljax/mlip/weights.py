"""CHGNet's pretrained weights: found in the installed ``chgnet`` package, converted once.

The ``chgnet`` wheel ships its checkpoints (``chgnet/pretrained/<version>/*.pth.tar``);
nothing is downloaded. The first use converts the checkpoint's ``state_dict`` into a
NumPy ``.npz`` under ``$CRYSTALJAX_CACHE_DIR/chgnet/`` (this needs torch, only then); every
later use loads that file without torch. The file name carries the checkpoint's SHA-256,
so a different wheel converts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from importlib import util as importlib_util
from pathlib import Path

import numpy as np

from crystaljax.paths import default_cache_dir

#: checkpoint file of each model version inside the chgnet package
CHECKPOINTS = {
    "0.3.0": "pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "0.2.0": "pretrained/0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
}
DEFAULT_VERSION = "0.3.0"


class WeightsError(RuntimeError):
    """The CHGNet weights cannot be found or converted (the message says what to do)."""


def checkpoint_path(version: str = DEFAULT_VERSION) -> Path:
    """Path of the bundled checkpoint of ``version`` in the installed ``chgnet`` package."""
    if version not in CHECKPOINTS:
        raise WeightsError(f"unknown CHGNet version {version!r}; choose one of {sorted(CHECKPOINTS)}")
    spec = importlib_util.find_spec("chgnet")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the CHGNet weights come from the 'chgnet' package, which is not "
                           "installed: run `make setup` (or pip install 'crystaljax[mlip]')")
    path = Path(list(spec.submodule_search_locations)[0]) / CHECKPOINTS[version]
    if not path.is_file():
        raise WeightsError(f"the installed chgnet package has no checkpoint {path}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_checkpoint(source: Path, target: Path) -> dict:
    """Write ``source``'s state_dict as float32 arrays to ``target`` (.npz) and a JSON record
    beside it (model arguments, source hash, seconds); returns the record. Needs torch."""
    try:
        import torch
    except ImportError:
        raise WeightsError("converting the CHGNet checkpoint needs torch once (it is then "
                           "cached): run `make setup`") from None
    start = time.perf_counter()
    state = torch.load(source, map_location="cpu", weights_only=False)["model"]
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in state["state_dict"].items()}
    record = {"source": str(source), "sha256": _sha256(source),
              "model_args": {k: v for k, v in state["model_args"].items()
                             if isinstance(v, (int, float, str, bool, list, type(None)))},
              "num_parameters": int(sum(a.size for a in arrays.values())),
              "torch": torch.__version__}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **arrays)
    os.replace(tmp, target)
    record["seconds"] = round(time.perf_counter() - start, 3)
    target.with_suffix(".json").write_text(json.dumps(record, indent=1))
    return record


def load_weights(version: str = DEFAULT_VERSION, cache_dir: str | Path | None = None
                 ) -> tuple[dict[str, np.ndarray], dict]:
    """(state_dict as float32 NumPy arrays keyed by torch names, record) of ``version``,
    converted on first use into ``cache_dir/chgnet`` (default: the crystaljax cache)."""
    source = checkpoint_path(version)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / "chgnet" / f"chgnet_{version}_{_sha256(source)[:16]}.npz"
    if target.is_file() and target.with_suffix(".json").is_file():
        record = json.loads(target.with_suffix(".json").read_text())
    else:
        record = convert_checkpoint(source, target)
    with np.load(target) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, record


__all__ = ["CHECKPOINTS", "DEFAULT_VERSION", "WeightsError", "checkpoint_path",
           "convert_checkpoint", "load_weights"]
