"""Array specs: shape, dtype and bounds of observation fields (jumanji-style)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """Shape, dtype and inclusive bounds of one array (bounds None = unbounded)."""

    shape: tuple[int, ...]
    dtype: type
    minimum: float | None = None
    maximum: float | None = None

    def generate_value(self) -> np.ndarray:
        """A zero (or ``minimum``) array of this spec, for initialising networks/buffers."""
        fill = 0 if self.minimum is None or not np.isfinite(self.minimum) else self.minimum
        return np.full(self.shape, fill, dtype=self.dtype)

    def validate(self, value) -> np.ndarray:
        """Return ``value`` as an array if it fits this spec, else raise ValueError."""
        arr = np.asarray(value)
        if arr.shape != tuple(self.shape):
            raise ValueError(f"expected shape {self.shape}, got {arr.shape}")
        if arr.dtype != np.dtype(self.dtype):
            raise ValueError(f"expected dtype {np.dtype(self.dtype)}, got {arr.dtype}")
        if arr.dtype != np.bool_ and arr.size:
            if self.minimum is not None and np.nanmin(arr) < self.minimum:
                raise ValueError(f"value {np.nanmin(arr)} below minimum {self.minimum}")
            if self.maximum is not None and np.nanmax(arr) > self.maximum:
                raise ValueError(f"value {np.nanmax(arr)} above maximum {self.maximum}")
        return arr
