"""Pseudopotentials generated at run time by Quantum ESPRESSO's atomic code ``ld1.x``.

Elements whose cp2k-data GTH entries are not good enough (Na: the valence-only GTH
makes NaCl 4.5 % too dense, the semicore one needs > 200 Ry) are generated with
``ld1.x`` from an input shipped with crystaljax (``crystaljax/oracles/qe/ld1/<El>.in``),
into the family's directory, under a file name keyed by a hash of the input
(:func:`generate_ld1_pseudo`). :func:`ld1_transferability` runs ld1.x's own test of a
generated set in other atomic configurations.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from crystaljax.oracles.qe.runner import RunnerConfig, run_environment

_log = logging.getLogger(__name__)

#: ld1.x inputs shipped with crystaljax, ``<name>`` -> ``LD1_INPUT_DIR / <name>``.
LD1_INPUT_DIR = Path(__file__).resolve().parent / "ld1"


class PseudoGenerationError(RuntimeError):
    """``ld1.x`` could not generate a pseudopotential (missing, failed or no file written)."""


_FILE_PSEUDOPW = re.compile(r"file_pseudopw\s*=\s*['\"]([^'\"]+)['\"]", re.IGNORECASE)
_NUMBERS_ONLY = re.compile(r"^[\s0-9.EeDd+-]+$")


def ld1_input_path(name: str | Path) -> Path:
    """The ld1.x input ``name``: an absolute path, a path relative to :data:`LD1_INPUT_DIR`
    (e.g. ``Na.in``, ``pslibrary/N.pbe-n-kjpaw_psl.1.0.0.in``), or else relative to the
    working directory."""
    path = Path(name)
    if path.is_absolute():
        return path
    shipped = LD1_INPUT_DIR / path
    return shipped if shipped.is_file() else path


def ld1_input_element(name: str | Path) -> str:
    """The element of an ld1.x input named as pslibrary names them: the file name's prefix
    (``pslibrary/O.pbe-n-kjpaw_psl.0.1.in`` -> ``"O"``)."""
    return Path(name).name.split(".", 1)[0]


def normalize_ld1_upf(text: str, width: int = 4) -> str:
    """Make a UPF file written by ld1.x reproducible and readable by pw.x 6.7.

    * The generation date (``Generation date:`` and ``date="..."``) is blanked,
      so the file, and hence its hash in the oracle's cache key, depends only on
      the input and the ld1.x build.
    * ld1.x 6.7 writes some arrays (``PP_DIJ``, ``PP_Q``, ``PP_MULTIPOLES`` of a
      PAW set) as a single line of more than 1024 characters, which the XML
      reader of pw.x 6.7 rejects ("xmlr_opentag: severe error, line too long").
      Lines made only of numbers and longer than 100 characters are re-wrapped
      ``width`` numbers per line; values are copied as text, unchanged.
    """
    text = re.sub(r"Generation date:[^\n]*", "Generation date: (not recorded)", text)
    text = re.sub(r'(<PP_HEADER[^>]*?\sdate=)"[^"]*"', r'\1""', text, flags=re.DOTALL)
    lines = []
    for line in text.split("\n"):
        tokens = line.split()
        if len(line) > 100 and tokens and _NUMBERS_ONLY.match(line):
            lines.extend("  " + "  ".join(tokens[i : i + width]) for i in range(0, len(tokens), width))
        else:
            lines.append(line)
    return "\n".join(lines)


def _ld1_env() -> dict:
    """ld1.x's environment: a single-rank pw.x's (one OpenMP thread, Open MPI's quick local
    start-up, the as-root switches; :func:`~crystaljax.oracles.qe.runner.run_environment`)."""
    return run_environment(RunnerConfig(threads=1))


def _run_ld1(text: str, workdir: Path, ld1_command: str, time_limit: float) -> str:
    """Run ld1.x on input ``text`` in ``workdir``; its output (raises on failure)."""
    if shutil.which(ld1_command) is None:
        raise PseudoGenerationError(
            f"{ld1_command} not found (it is in Debian's quantum-espresso package, like pw.x)"
        )
    try:
        proc = subprocess.run(
            [ld1_command], input=text, cwd=workdir, capture_output=True, text=True,
            timeout=time_limit, env=_ld1_env(),
        )
    except subprocess.TimeoutExpired:
        raise PseudoGenerationError(f"{ld1_command} ran past {time_limit:.0f} s") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Error in routine" in output:
        tail = " | ".join(line.strip() for line in output.splitlines()[-12:] if line.strip())
        raise PseudoGenerationError(f"{ld1_command} failed (exit {proc.returncode}): {tail}")
    return output


def ld1_store() -> Path:
    """Where generated pseudopotentials are kept once per machine (every family directory
    links or copies them from here): ``$CRYSTALJAX_CACHE_DIR/pseudos/ld1``."""
    from crystaljax.paths import default_cache_dir

    return default_cache_dir() / "pseudos" / "ld1"


def generate_ld1_pseudo(
    element: str,
    input_file: str | Path,
    directory: Path | str,
    ld1_command: str = "ld1.x",
    time_limit: float = 300.0,
    store: Path | str | None = None,
) -> Path:
    """Generate ``element``'s pseudopotential with ld1.x, or reuse the one generated before.

    The file is ``<directory>/<El>.ld1-<hash>.UPF``, where ``hash`` is the
    SHA-256 of the input text, the ld1.x version (:func:`ld1_version`) and
    :data:`NORMALIZE_VERSION`: a changed input or program gives a new file (and a
    new cache key), an unchanged one is generated once per machine, into ``store``
    (default :func:`ld1_store`), and linked (or copied) into ``directory``. ld1.x
    runs in a temporary directory; the UPF file (normalised by
    :func:`normalize_ld1_upf`), ld1.x's output (``.out``, with its own test of the
    pseudopotential) and a record of the generation (``.json``: element, input,
    seconds) are moved in atomically, so concurrent workers never read a partial file.

    Raises:
      PseudoGenerationError: ld1.x is missing, fails, or writes no file; a file cannot
        be written.
    """
    source = ld1_input_path(input_file)
    try:
        text = source.read_text()
    except OSError as exc:
        raise PseudoGenerationError(f"cannot read ld1.x input {source}: {exc}") from None
    match = _FILE_PSEUDOPW.search(text)
    if match is None:
        raise PseudoGenerationError(f"ld1.x input {source} sets no file_pseudopw")
    directory = Path(directory)
    key = hashlib.sha256(f"{text}\0{ld1_version(ld1_command)}\0{NORMALIZE_VERSION}".encode())
    stem = f"{element}.ld1-{key.hexdigest()[:16]}"
    target = directory / f"{stem}.UPF"
    if target.is_file():
        return target
    store = Path(store) if store is not None else ld1_store()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not (store / f"{stem}.UPF").is_file():
            _generate_into(store, stem, element, source, text, match.group(1), ld1_command,
                           time_limit)
        if store.resolve() != directory.resolve():
            for suffix in (".out", ".json"):  # logs: optional
                if (store / f"{stem}{suffix}").is_file():
                    _place(store / f"{stem}{suffix}", directory / f"{stem}{suffix}")
            _place(store / f"{stem}.UPF", target)  # the UPF last: its presence means done
    except OSError as exc:  # a full disk, a read-only store, ...
        raise PseudoGenerationError(
            f"cannot write the {element} pseudopotential under {store} or {directory}: {exc}"
        ) from None
    return target


#: version of :func:`normalize_ld1_upf`'s output (part of a generated file's name)
NORMALIZE_VERSION = "1"


@functools.lru_cache(maxsize=8)
def ld1_version(ld1_command: str = "ld1.x") -> str:
    """The version ld1.x prints (e.g. ``6.7MaX``; part of a generated file's name, so a
    different ld1.x build generates its own files). ``unknown`` if it cannot be read."""
    if shutil.which(ld1_command) is None:
        raise PseudoGenerationError(
            f"{ld1_command} not found (it is in Debian's quantum-espresso package, like pw.x; "
            "`make setup` installs it)")
    try:  # in a scratch folder: ld1.x writes CRASH and input_tmp.in where it runs
        with tempfile.TemporaryDirectory(prefix="crystaljax-ld1-version-") as tmp:
            proc = subprocess.run([ld1_command], input="", capture_output=True, text=True,
                                  timeout=30, env=_ld1_env(), cwd=tmp)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"Program LD1 v\.(\S+)", proc.stdout + proc.stderr)
    return match.group(1) if match else "unknown"


def _generate_into(store: Path, stem: str, element: str, source: Path, text: str,
                   produced_name: str, ld1_command: str, time_limit: float) -> None:
    """Run ld1.x on ``text`` and move its normalised UPF, log and record into ``store``."""
    import json
    import time

    store.mkdir(parents=True, exist_ok=True)
    _log.info("generating the %s pseudopotential with %s (%s; once per machine)", element,
              ld1_command, source.name)
    with tempfile.TemporaryDirectory(dir=store, prefix=f".{stem}.") as tmp:
        t0 = time.perf_counter()
        output = _run_ld1(text, Path(tmp), ld1_command, time_limit)
        seconds = time.perf_counter() - t0
        produced = Path(tmp) / produced_name
        if not produced.is_file():
            raise PseudoGenerationError(f"{ld1_command} wrote no {produced_name} for {element}")
        (Path(tmp) / "upf").write_text(normalize_ld1_upf(produced.read_text()))
        (Path(tmp) / "log").write_text(output)
        (Path(tmp) / "record").write_text(json.dumps({
            "element": element, "input": str(source.relative_to(LD1_INPUT_DIR))
            if source.is_relative_to(LD1_INPUT_DIR) else str(source),
            "ld1_command": ld1_command, "seconds": round(seconds, 3)}))
        os.replace(Path(tmp) / "log", store / f"{stem}.out")
        os.replace(Path(tmp) / "record", store / f"{stem}.json")
        os.replace(Path(tmp) / "upf", store / f"{stem}.UPF")


def _place(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (copy across file systems), atomically."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def generation_seconds(upf: Path | str) -> float | None:
    """Seconds ld1.x took to generate ``upf`` (its ``.json`` record), if recorded."""
    import json

    record = Path(upf).with_suffix(".json")
    try:
        return float(json.loads(record.read_text())["seconds"])
    except (OSError, ValueError, KeyError):
        return None


@dataclasses.dataclass(frozen=True)
class Ld1Test:
    """ld1.x's own test of a generated pseudopotential in one atomic configuration.

    Attributes:
      config: the configuration, e.g. ``"2s2 2p6 3s0 3p0"`` (the Na+ ion).
      etot_ae: all-electron total energy (Ry).
      etot_ps: pseudo-atom total energy (Ry).
      eigenvalues: state label (e.g. ``"3S"``) -> (AE, PS) eigenvalue (Ry).
      converged: whether the pseudo-atom's self-consistency converged in this
        configuration (ld1.x stops after :data:`LD1_MAX_ITER` iterations and prints its
        numbers anyway; they are then not a test of the pseudopotential).
    """

    config: str
    etot_ae: float
    etot_ps: float
    eigenvalues: Mapping[str, tuple[float, float]]
    converged: bool = True


_CONFIG_STATE = re.compile(r"^\d[spdfSPDF](-?[0-9.]+)$")


def config_electrons(config: str) -> float:
    """Electrons in the occupied states of a valence configuration, e.g.
    ``"4d9.5 5s1.5 5p0"`` -> 11.0 (negative occupations mark unbound states: not counted)."""
    total = 0.0
    for token in config.split():
        match = _CONFIG_STATE.match(token)
        if match is None:
            raise ValueError(f"not a valence configuration state: {token!r} in {config!r}")
        total += max(float(match.group(1)), 0.0)
    return total


def ld1_transferability(
    input_file: str | Path,
    configs: Sequence[str],
    ld1_command: str = "ld1.x",
    time_limit: float = 120.0,
) -> list[Ld1Test]:
    """Test an ld1.x pseudopotential in other atomic configurations (excited states).

    ld1.x 6.7 accepts one test configuration per generation run, so the input is
    run once per configuration with a ``&test`` namelist appended. In that mode
    ld1.x takes the valence charge from the test configuration, so only
    configurations with the reference's number of valence electrons test the
    same pseudopotential (:func:`config_electrons`; callers filter: an ionised
    configuration would generate a different one). Its separate test mode,
    ``iswitch = 2``, does not converge for PAW sets read back from a file
    (``eps = NaN`` after 200 iterations, measured for pslibrary's Na, O and Fe).
    Transferability: the all-electron and pseudo-atom total energy differences
    between configurations (``etot_ae`` and ``etot_ps`` relative to the first)
    must agree, and so must the eigenvalues; a ghost state or a poor core
    description shows up as a mismatch.

    Raises:
      PseudoGenerationError: ld1.x is missing or fails, or prints no test.
    """
    try:
        base = ld1_input_path(input_file).read_text()
    except OSError as exc:
        raise PseudoGenerationError(f"cannot read ld1.x input {input_file}: {exc}") from None
    results = []
    for config in configs:
        text = base.rstrip() + f"\n &test\n    nconf=1,\n    configts(1)='{config}',\n /\n"
        with tempfile.TemporaryDirectory(prefix="crystaljax-ld1-") as tmp:
            output = _run_ld1(text, Path(tmp), ld1_command, time_limit)
        results.append(_parse_ld1_test(config, output))
    return results


# one state of a test block: "1 0  3S  1( 2.00)  -0.72653  -0.75300  0.02648  !" (ld1.x
# flags a large AE-PS difference with a trailing "!")
_LD1_EIG = re.compile(
    r"^\s*\d+\s+\d+\s+(\w+)\s+\d\(\s*[0-9.]+\)\s+(-?[0-9.]+)\s+(-?[0-9.]+)\s+(-?[0-9.]+)"
    r"\s*!?\s*$"
)
_LD1_ITER = re.compile(r"eps =\s*\S+\s+iter =\s*(\d+)")
#: ld1.x stops its self-consistency loop after this many iterations (then prints 201)
LD1_MAX_ITER = 200


def _parse_ld1_test(config: str, output: str) -> Ld1Test:
    """The last test block of ld1.x's ``output`` (after "Testing the pseudopotential")."""
    block = output.rsplit("Testing the pseudopotential", 1)
    if len(block) != 2:
        raise PseudoGenerationError(f"ld1.x printed no pseudopotential test for {config!r}")
    test = block[1]
    etot = re.search(r"Etot =\s*(-?[0-9.]+) Ry", test)
    etotps = re.search(r"Etotps =\s*(-?[0-9.]+) Ry", test)
    if etot is None or etotps is None:
        raise PseudoGenerationError(f"no test energies in ld1.x's output for {config!r}")
    eigenvalues = {}
    for line in test.split("De AE-PS", 1)[-1].splitlines()[1:]:
        m = _LD1_EIG.match(line)
        if m is None:
            if eigenvalues:
                break
            continue
        eigenvalues[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    if not eigenvalues:
        raise PseudoGenerationError(f"no test eigenvalues in ld1.x's output for {config!r}")
    iterations = _LD1_ITER.search(test)
    converged = iterations is None or int(iterations.group(1)) <= LD1_MAX_ITER
    return Ld1Test(config, float(etot.group(1)), float(etotps.group(1)), eigenvalues, converged)


__all__ = ["LD1_INPUT_DIR", "NORMALIZE_VERSION", "Ld1Test", "config_electrons",
           "generation_seconds", "ld1_store", "ld1_version", "PseudoGenerationError", "generate_ld1_pseudo",
           "ld1_input_element", "ld1_input_path", "ld1_transferability", "normalize_ld1_upf"]
