"""Machine labels of benchmark results and the BENCHMARKS.md sections the scripts rewrite."""

from __future__ import annotations

import json
import os
import platform
import re


def machine_description() -> str:
    """'N cores, CPU model, M GiB RAM[, GPU: device kind]' of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
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
    return "" if device.platform == "cpu" else f", {device.platform.upper()}: {device.device_kind}"


def replace_section(path: str, section: str, body: str) -> None:
    """Replace the text between ``<!-- section:start -->`` and ``<!-- section:end -->`` in
    ``path`` (appending the section when the markers are absent; creating the file)."""
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


def write_results(result: dict, out: str, markdown_path: str | None, section: str,
                  markdown) -> None:
    """``result`` to ``out`` (JSON) and, unless ``markdown_path`` is None, its section of
    ``markdown_path`` rendered by ``markdown(result, source)``."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out}")
    if markdown_path:
        render_results(out, markdown_path, section, markdown)


def render_results(source: str, markdown_path: str, section: str, markdown) -> None:
    """Rewrite ``section`` of ``markdown_path`` from the results JSON ``source``."""
    with open(source) as f:
        replace_section(markdown_path, section, markdown(json.load(f), source))
    print(f"updated {markdown_path} ({section}) from {source}")


__all__ = ["accelerator_description", "machine_description", "render_results",
           "replace_section", "run_script", "write_results"]


def run_script(main, argv=None) -> None:
    """Run a benchmark script's ``main``; a config or input error prints one line and exits 2."""
    import sys

    from crystaljax.config import ConfigError

    try:
        main(argv)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"{os.path.basename(sys.argv[0])}: error: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        raise SystemExit(2) from None
