"""Pseudopotential families for pw.x, with nothing downloaded.

Two kinds of family share one description (:class:`PseudoFamily`):

* the default **GTH family**, generated at run time from the GTH-PBE
  parameters in Debian's ``cp2k-data`` (``/usr/share/cp2k/GTH_POTENTIALS`` and
  ``POTENTIAL_UZH``) and written as analytic GTH files in ABINIT's ``pspcod = 10`` layout, which
  pw.x reads when the file name ends in ``.gth``;
* elements whose cp2k-data entries are not good enough (Na: the valence-only
  GTH makes NaCl 4.5 % too dense, the semicore one needs > 200 Ry) are instead
  **generated with QE's own atomic code** ``ld1.x`` at run time, from an input
  shipped with crystaljax (``crystaljax/oracles/qe/ld1/<El>.in``), into the same
  directory (file name keyed by a hash of the input);
* a **UPF family** chosen by the user (e.g. SSSP), described by a JSON mapping
  file ``{"pseudo_dir": "...", "elements": {"Si": {"file": "Si.upf",
  "ecutwfc": 30, "ecutrho": 240}, ...}}``.

Cutoffs are in Rydberg, as pw.x expects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pymatgen.core import Element

#: Debian's cp2k-data files with GTH parameters: the classic set, then the
#: UZH set (which adds valence-only variants such as ``Na GTH-PBE-q1``).
CP2K_DATA = Path("/usr/share/cp2k")
CP2K_GTH_FILES = (CP2K_DATA / "GTH_POTENTIALS", CP2K_DATA / "POTENTIAL_UZH")

#: ABINIT ``pspxc`` code of PBE, the functional of every generated file.
_PSPXC_PBE = 11

#: ld1.x inputs shipped with crystaljax, ``<name>`` -> ``LD1_INPUT_DIR / <name>``.
LD1_INPUT_DIR = Path(__file__).resolve().parent / "ld1"


class MissingPseudopotential(KeyError):
    """An element has no pseudopotential in the chosen family."""


class PseudoGenerationError(RuntimeError):
    """``ld1.x`` could not generate a pseudopotential (missing, failed or no file written)."""


@dataclasses.dataclass(frozen=True)
class GTHChannel:
    """Non-local channel of angular momentum ``l``.

    Attributes:
      radius: projector radius r_l (Bohr).
      h: upper triangle of the h^l matrix (Hartree), row by row:
        ``((h11, h12, h13), (h22, h23), (h33,))`` for three projectors.
    """

    radius: float
    h: tuple[tuple[float, ...], ...]

    @property
    def n_projectors(self) -> int:
        return len(self.h)


@dataclasses.dataclass(frozen=True)
class GTHEntry:
    """One GTH pseudopotential as given in CP2K's data file.

    Attributes:
      element: chemical symbol.
      name: CP2K name, e.g. ``GTH-PBE-q9``.
      electrons: valence electrons per angular momentum (s, p, d, f).
      r_loc: local radius (Bohr).
      c_loc: coefficients C1..C4 of the local part (Hartree).
      channels: non-local channels, l = 0, 1, ...
    """

    element: str
    name: str
    electrons: tuple[int, ...]
    r_loc: float
    c_loc: tuple[float, ...]
    channels: tuple[GTHChannel, ...]

    @property
    def z_valence(self) -> int:
        """Number of valence electrons (ionic charge of the pseudo-ion)."""
        return sum(self.electrons)


def _floats(tokens: Iterable[str]) -> list[float]:
    return [float(t) for t in tokens]


def parse_cp2k_gth(
    paths: Sequence[Path | str] = CP2K_GTH_FILES, functional: str = "PBE"
) -> dict[str, dict[str, GTHEntry]]:
    """Read every GTH entry of one functional from CP2K data files.

    An entry qualifies when its name is ``GTH-<functional>-q<N>`` (e.g.
    ``GTH-PBE-q9``). When two files hold the same element and name, the
    first file wins.

    Args:
      paths: CP2K potential files (``GTH_POTENTIALS``, ``POTENTIAL_UZH``, ...).
      functional: functional tag of the names.

    Returns:
      element symbol -> {entry name -> :class:`GTHEntry`}.
    """
    name_pattern = re.compile(rf"^GTH-{re.escape(functional)}-q\d+$")
    entries: dict[str, dict[str, GTHEntry]] = {}
    for path in paths:
        if not Path(path).is_file():
            continue
        lines = Path(path).read_text().splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            tokens = line.split()
            if (
                len(tokens) < 2
                or line.startswith(("#", " "))
                or not name_pattern.match(tokens[1])
            ):
                i += 1
                continue
            try:
                entry, i = _parse_entry(lines, i)
            except (ValueError, IndexError):  # entries that hold no parameters ("NA")
                i += 1
                continue
            entries.setdefault(entry.element, {}).setdefault(entry.name, entry)
    return entries


def _parse_entry(lines: list[str], i: int) -> tuple[GTHEntry, int]:
    """Parse the entry whose header is ``lines[i]``; returns it and the next line index."""
    element, name = lines[i].split()[:2]
    electrons = tuple(int(t) for t in lines[i + 1].split())
    loc = lines[i + 2].split()
    r_loc, n_loc = float(loc[0]), int(loc[1])
    c_loc = tuple(_floats(loc[2 : 2 + n_loc]))
    n_channels = int(lines[i + 3].split()[0])
    j = i + 4
    channels = []
    for _ in range(n_channels):
        head = lines[j].split()
        radius, n_proj = float(head[0]), int(head[1])
        rows = [tuple(_floats(head[2 : 2 + n_proj]))]
        j += 1
        for row in range(1, n_proj):
            rows.append(tuple(_floats(lines[j].split()[: n_proj - row])))
            j += 1
        channels.append(GTHChannel(radius, tuple(rows) if n_proj else ()))
    return GTHEntry(element, name, electrons, r_loc, c_loc, tuple(channels)), j


def softest_entry(variants: Mapping[str, GTHEntry]) -> GTHEntry:
    """The variant with the fewest valence electrons (the cheapest in plane waves)."""
    return min(variants.values(), key=lambda e: (e.z_valence, e.name))


def format_pspcod10(entry: GTHEntry) -> str:
    """Write ``entry`` in ABINIT's pspcod-10 layout (the ``.gth`` files pw.x reads).

    Layout: title; ``zatom zion date``; ``10 11 lmax 0 2001 0``; ``rloc nloc
    C1..``; number of channels; per channel ``r nprj h11 h12 ..`` followed by
    the remaining upper-triangle rows and, for l > 0, one row of spin-orbit
    k coefficients per projector (zero: GTH-PBE is scalar-relativistic).
    An entry without non-local channels gets one empty s channel, because
    pw.x reads ``lmax + 1`` channel lines.
    """
    z = Element(entry.element).Z
    channels = list(entry.channels) or [GTHChannel(entry.r_loc, ())]
    lmax = len(channels) - 1
    out = [
        f"{entry.element} {entry.name} (CP2K GTH-PBE, converted by crystaljax)",
        f"{z:d} {entry.z_valence:d} 010101 zatom,zion,pspdat",
        f"10 {_PSPXC_PBE:d} {lmax:d} 0 2001 0 pspcod,pspxc,lmax,lloc,mmax,r2well",
        f"{entry.r_loc:.8f} {len(entry.c_loc):d} "
        + " ".join(f"{c:.8f}" for c in entry.c_loc)
        + " rloc nloc c1..c4",
        f"{len(channels):d} nnonloc",
    ]
    for ell, channel in enumerate(channels):
        n = channel.n_projectors
        first = " ".join(f"{h:.8f}" for h in channel.h[0]) if n else ""
        out.append(f"{channel.radius:.8f} {n:d} {first}".rstrip())
        for row in channel.h[1:]:
            out.append(" ".join(f"{h:.8f}" for h in row))
        if ell > 0:
            for row in range(n):
                out.append(" ".join("0.0" for _ in range(n - row)))
    return "\n".join(out) + "\n"


@dataclasses.dataclass(frozen=True)
class PseudoSpec:
    """One element of a family.

    Attributes:
      element: chemical symbol.
      filename: file name inside the family's directory.
      z_valence: valence electrons.
      ecutwfc: recommended wavefunction cutoff (Ry).
      ecutrho: recommended charge-density cutoff (Ry).
      sha256: hash of the file's content (part of the cache settings hash).
    """

    element: str
    filename: str
    z_valence: float
    ecutwfc: float
    ecutrho: float
    sha256: str


@dataclasses.dataclass(frozen=True)
class PseudoFamily:
    """A set of pseudopotential files in one directory, with cutoffs per element."""

    name: str
    directory: Path
    specs: Mapping[str, PseudoSpec]
    #: element -> why its pseudopotential could not be made (e.g. ld1.x missing).
    unavailable: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def spec(self, element: str) -> PseudoSpec:
        """The element's entry; raises :class:`MissingPseudopotential` if absent."""
        try:
            return self.specs[element]
        except KeyError:
            why = self.unavailable.get(element)
            raise MissingPseudopotential(
                f"no pseudopotential for element {element!r} in family {self.name!r}"
                + (f" ({why})" if why else "")
            ) from None

    def missing(self, elements: Iterable[str]) -> list[str]:
        """Elements of ``elements`` that the family lacks, sorted."""
        return sorted({e for e in elements if e not in self.specs})

    def cutoffs(self, elements: Iterable[str]) -> tuple[float, float]:
        """(ecutwfc, ecutrho) in Ry for a crystal: the maximum over its elements."""
        specs = [self.spec(e) for e in set(elements)]
        return max(s.ecutwfc for s in specs), max(s.ecutrho for s in specs)

    def fingerprint(self) -> str:
        """Hash of file contents and cutoffs (changes when any result could change)."""
        payload = sorted(
            (s.element, s.sha256, s.ecutwfc, s.ecutrho, s.z_valence) for s in self.specs.values()
        )
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_gth_family(
    directory: Path | str,
    cutoffs: Mapping[str, tuple[float, float]],
    variants: Mapping[str, str] | None = None,
    sources: Sequence[Path | str] = CP2K_GTH_FILES,
    generated: Mapping[str, str] | None = None,
    ld1_command: str = "ld1.x",
) -> PseudoFamily:
    """Generate ``<El>.gth`` files for the elements of ``cutoffs`` into ``directory``.

    Files are written atomically (temp file + rename), so concurrent workers
    writing the same family never read a half-written file.

    Args:
      directory: target directory (created if needed).
      cutoffs: element -> (ecutwfc, ecutrho) in Ry; only these elements are written.
      variants: element -> CP2K entry name (e.g. ``{"Cu": "GTH-PBE-q11"}``);
        elements not named get their softest GTH-PBE variant.
      sources: CP2K data files to read.
      generated: element -> ld1.x input (a name in :data:`LD1_INPUT_DIR` or a
        path); these elements are generated by ``ld1.x``
        (:func:`generate_ld1_pseudo`) instead of read from ``sources``.
      ld1_command: the ld1.x executable.

    Returns:
      The family; elements (or named variants) missing from ``sources``, and
      elements whose ld1.x generation failed (with a warning), are left out
      of it, so they report a missing pseudopotential (with the reason).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = parse_cp2k_gth(sources)
    variants = dict(variants or {})
    generated = dict(generated or {})
    specs: dict[str, PseudoSpec] = {}
    unavailable: dict[str, str] = {}
    for element, (ecutwfc, ecutrho) in cutoffs.items():
        if element in generated:
            try:
                path = generate_ld1_pseudo(element, generated[element], directory, ld1_command)
            except PseudoGenerationError as exc:
                warnings.warn(f"no {element} pseudopotential: {exc}", RuntimeWarning, stacklevel=2)
                unavailable[element] = str(exc)
                continue
            specs[element] = PseudoSpec(
                element, path.name, upf_valence(path), float(ecutwfc), float(ecutrho),
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
            continue
        available = entries.get(element)
        if not available:
            continue
        if element in variants:
            entry = available.get(variants[element])
            if entry is None:
                continue
        else:
            entry = softest_entry(available)
        text = format_pspcod10(entry)
        path = directory / f"{element}.gth"
        if not path.exists() or path.read_text() != text:
            tmp = directory / f".{element}.gth.{os.getpid()}"
            tmp.write_text(text)
            os.replace(tmp, path)
        specs[element] = PseudoSpec(
            element, path.name, float(entry.z_valence), float(ecutwfc), float(ecutrho),
            _sha256_text(text),
        )
    name = "gth-pbe-cp2k+ld1" if generated else "gth-pbe-cp2k"
    return PseudoFamily(name, directory, specs, unavailable)


# -- pseudopotentials generated by QE's atomic code (ld1.x) ---------------------------------------

_FILE_PSEUDOPW = re.compile(r"file_pseudopw\s*=\s*['\"]([^'\"]+)['\"]", re.IGNORECASE)
_NUMBERS_ONLY = re.compile(r"^[\s0-9.EeDd+-]+$")


def ld1_input_path(name: str | Path) -> Path:
    """The ld1.x input ``name``: a path, or a file name in :data:`LD1_INPUT_DIR`."""
    path = Path(name)
    return path if path.is_absolute() or path.parent != Path(".") else LD1_INPUT_DIR / path


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


def _run_ld1(text: str, workdir: Path, ld1_command: str, time_limit: float) -> str:
    """Run ld1.x on input ``text`` in ``workdir``; its output (raises on failure)."""
    if shutil.which(ld1_command) is None:
        raise PseudoGenerationError(
            f"{ld1_command} not found (it is in Debian's quantum-espresso package, like pw.x)"
        )
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    try:
        proc = subprocess.run(
            [ld1_command], input=text, cwd=workdir, capture_output=True, text=True,
            timeout=time_limit, env=env,
        )
    except subprocess.TimeoutExpired:
        raise PseudoGenerationError(f"{ld1_command} ran past {time_limit:.0f} s") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Error in routine" in output:
        tail = " | ".join(line.strip() for line in output.splitlines()[-12:] if line.strip())
        raise PseudoGenerationError(f"{ld1_command} failed (exit {proc.returncode}): {tail}")
    return output


def generate_ld1_pseudo(
    element: str,
    input_file: str | Path,
    directory: Path | str,
    ld1_command: str = "ld1.x",
    time_limit: float = 300.0,
) -> Path:
    """Generate ``element``'s pseudopotential with ld1.x, or reuse the one generated before.

    The file is ``<directory>/<El>.ld1-<hash>.UPF``, where ``hash`` is the
    SHA-256 of the input text: a changed input gives a new file (and a new
    cache key), an unchanged one is generated once. ld1.x runs in a temporary
    directory; the UPF file (normalised by :func:`normalize_ld1_upf`) and
    ld1.x's output (``.out``, with its own test of the pseudopotential) are
    moved in atomically, so concurrent workers never read a partial file.

    Raises:
      PseudoGenerationError: ld1.x is missing, fails, or writes no file.
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
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{element}.ld1-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    target = directory / f"{stem}.UPF"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(dir=directory, prefix=f".{stem}.") as tmp:
        output = _run_ld1(text, Path(tmp), ld1_command, time_limit)
        produced = Path(tmp) / match.group(1)
        if not produced.is_file():
            raise PseudoGenerationError(f"{ld1_command} wrote no {match.group(1)} for {element}")
        (Path(tmp) / "upf").write_text(normalize_ld1_upf(produced.read_text()))
        (Path(tmp) / "log").write_text(output)
        os.replace(Path(tmp) / "log", directory / f"{stem}.out")
        os.replace(Path(tmp) / "upf", target)
    return target


@dataclasses.dataclass(frozen=True)
class Ld1Test:
    """ld1.x's own test of a generated pseudopotential in one atomic configuration.

    Attributes:
      config: the configuration, e.g. ``"2s2 2p6 3s0 3p0"`` (the Na+ ion).
      etot_ae: all-electron total energy (Ry).
      etot_ps: pseudo-atom total energy (Ry).
      eigenvalues: state label (e.g. ``"3S"``) -> (AE, PS) eigenvalue (Ry).
    """

    config: str
    etot_ae: float
    etot_ps: float
    eigenvalues: Mapping[str, tuple[float, float]]


def ld1_transferability(
    input_file: str | Path,
    configs: Sequence[str],
    ld1_command: str = "ld1.x",
    time_limit: float = 120.0,
) -> list[Ld1Test]:
    """Test an ld1.x pseudopotential in other atomic configurations (ionised, excited).

    ld1.x 6.7 accepts one test configuration per generation run (and its
    separate test mode, ``iswitch = 2``, does not converge for PAW sets read
    back from a file), so the input is run once per configuration with a
    ``&test`` namelist appended; the pseudopotential generated is the same each
    time. Transferability: the all-electron and pseudo-atom total energy
    differences between configurations (``etot_ae`` and ``etot_ps`` relative
    to the first) must agree, and so must the eigenvalues; a ghost state or a
    poor core description shows up as a mismatch.

    Raises:
      PseudoGenerationError: ld1.x is missing or fails, or prints no test.
    """
    base = ld1_input_path(input_file).read_text()
    results = []
    for config in configs:
        text = base.rstrip() + f"\n &test\n    nconf=1,\n    configts(1)='{config}',\n /\n"
        with tempfile.TemporaryDirectory(prefix="crystaljax-ld1-") as tmp:
            output = _run_ld1(text, Path(tmp), ld1_command, time_limit)
        results.append(_parse_ld1_test(config, output))
    return results


_LD1_EIG = re.compile(
    r"^\s*\d+\s+\d+\s+(\w+)\s+\d\(\s*[0-9.]+\)\s+(-?[0-9.]+)\s+(-?[0-9.]+)\s+(-?[0-9.]+)\s*$"
)


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
    return Ld1Test(config, float(etot.group(1)), float(etotps.group(1)), eigenvalues)


_UPF_ZVAL = re.compile(r'z_valence\s*=\s*"\s*([-+0-9.EeDd]+)\s*"', re.IGNORECASE)
_UPF1_ZVAL = re.compile(r"^\s*([-+0-9.EeDd]+)\s+Z valence", re.MULTILINE)


def upf_valence(path: Path | str) -> float:
    """Valence charge read from a UPF file header (UPF v1 or v2)."""
    head = Path(path).read_text(errors="replace")[:20000]
    match = _UPF_ZVAL.search(head) or _UPF1_ZVAL.search(head)
    if match is None:
        raise ValueError(f"cannot read the valence charge of {path}")
    return float(match.group(1).replace("D", "E").replace("d", "e"))


def load_upf_family(mapping_file: Path | str) -> PseudoFamily:
    """Load a user UPF family from a JSON mapping file.

    Format::

        {"name": "sssp-efficiency",            # optional
         "pseudo_dir": "/path/to/sssp",        # relative paths: to the mapping file
         "elements": {"Si": {"file": "Si.pbe-n-rrkjus_psl.1.0.0.UPF",
                             "ecutwfc": 30, "ecutrho": 240}, ...}}

    ``ecutrho`` defaults to 4 x ``ecutwfc`` (norm-conserving) when omitted.
    """
    mapping_file = Path(mapping_file)
    data = json.loads(mapping_file.read_text())
    directory = Path(data.get("pseudo_dir", "."))
    if not directory.is_absolute():
        directory = (mapping_file.parent / directory).resolve()
    specs = {}
    for element, item in data["elements"].items():
        path = directory / item["file"]
        if not path.is_file():
            raise FileNotFoundError(f"pseudopotential file for {element} not found: {path}")
        ecutwfc = float(item["ecutwfc"])
        ecutrho = float(item.get("ecutrho", 4.0 * ecutwfc))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        specs[element] = PseudoSpec(
            element, item["file"], upf_valence(path), ecutwfc, ecutrho, digest
        )
    return PseudoFamily(data.get("name", mapping_file.stem), directory, specs)
