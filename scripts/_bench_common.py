"""Helpers shared by the benchmark scripts: machine description and BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re

# The density criterion of the agent benchmarks (greedy policy over 256 episodes).
CRITERION_REWARD = 0.99
CRITERION_ERROR = 0.05  # g/cm3


def machine_description() -> str:
    """'N cores, CPU model, M GiB RAM' of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem = f", {mem_gib:.0f} GiB RAM"
    except (ValueError, OSError):
        mem = ""
    return f"{os.cpu_count()} cores, {cpu}{mem}{accelerator_description()}"


def accelerator_description() -> str:
    """', GPU: <device kind>' when JAX's default backend is an accelerator, else ''."""
    try:
        import jax

        device = jax.devices()[0]
    except Exception:  # noqa: BLE001 (no JAX, or no usable backend: describe the host only)
        return ""
    if device.platform == "cpu":
        return ""
    return f", {device.platform.upper()}: {device.device_kind}"


def backend_name() -> str:
    """JAX's default backend ('cpu', 'gpu', 'tpu')."""
    import jax

    return jax.default_backend()


def replace_table(path: str, section: str, body: str) -> None:
    """Replace the text between ``<!-- section:start -->`` and ``<!-- section:end -->``
    markers in ``path`` (appending a new section when the markers are absent)."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    block = f"{start}\n{body}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
