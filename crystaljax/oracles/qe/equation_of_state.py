"""Equation of state of a crystal from E(V) or P(V) points (no pw.x): fits and the minimum
search.

Volumes in Å^3, energies in eV, bulk moduli in GPa; lattice-constant factors are
fractions of the starting cell's lattice constants (volume factor = factor^3).

* :func:`fit_bulk_modulus`: B0, V0, E0 of an :mod:`ase.eos` fit on real cell volumes.
* :func:`local_bulk_modulus`: B = V d2E/dV2 at one volume from a quadratic fit.
* :func:`bulk_modulus_from_scan`: the bulk-modulus recipe's value from its energy scan
  around the template volume (B0, or the local B when E(V) has no usable minimum).
* :func:`birch_murnaghan_pressure`, :func:`fit_pressure_eos`,
  :func:`bulk_modulus_from_pressures`: the same from pressures (pw.x's stress) at two or
  more volumes (``recipe.eos_data: pressure``, the default), and
  :func:`energy_at_volume` for the energy at the template volume between them.
* :func:`search_energy_minimum`: bracket and sample the minimum of E under isotropic
  scaling (``recipe.relax`` with ``relax_search: energy``), giving the window the equation of
  state is fitted on.
* :func:`search_zero_pressure`: bracket and refine the zero of P under isotropic scaling
  (``recipe.relax`` with ``relax_search: pressure``, the default preset's), the same
  window for a P(V) fit in about half the runs.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from ase.eos import EquationOfState
from ase.units import GPa
from scipy.optimize import least_squares

#: Runs the E(V) minimum search keeps for the fit window once a minimum is bracketed.
REFINE_RUNS = 4

#: Most runs :func:`search_zero_pressure` adds at the estimated zero once it is bracketed.
REFINE_ZERO_RUNS = 2

#: B0' of the pressure fit when two volumes cannot determine it (second-order
#: Birch-Murnaghan; typical solids lie within 3.5-6)
DEFAULT_B_PRIME = 4.0


def fit_bulk_modulus(
    volumes: Sequence[float], energies: Sequence[float], eos: str = "birchmurnaghan"
) -> tuple[float, float, float]:
    """Equation-of-state fit on real volumes.

    Args:
      volumes: cell volumes (Å^3).
      energies: total energies (eV).
      eos: :mod:`ase.eos` name (``birchmurnaghan``, ``murnaghan``, ``vinet``, ...).

    Returns:
      (B0 in GPa, V0 in Å^3, E0 in eV).

    Raises:
      ValueError: the fit failed or gave non-finite numbers.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            v0, e0, b0 = EquationOfState(list(volumes), list(energies), eos=eos).fit()
        except Exception as exc:  # scipy's curve_fit raises RuntimeError / others
            raise ValueError(f"equation-of-state fit failed: {exc}") from exc
    b_gpa = float(b0) / GPa
    if not np.isfinite([b_gpa, v0, e0]).all():
        raise ValueError("equation-of-state fit gave non-finite parameters")
    return b_gpa, float(v0), float(e0)


def local_bulk_modulus(volumes: Sequence[float], energies: Sequence[float], v: float) -> float:
    """B = V d2E/dV2 (GPa) at volume ``v`` from a quadratic fit of E(V)."""
    c2 = np.polyfit(np.asarray(volumes), np.asarray(energies), 2)[0]
    return float(2.0 * c2 * v / GPa)


def bulk_modulus_from_scan(
    volumes: Sequence[float], energies: Sequence[float], template_volume: float,
    eos: str = "birchmurnaghan", trust: float = 0.2,
) -> tuple[float, dict]:
    """Bulk modulus (GPa) from an E(V) scan, and how it was obtained.

    The value is B0 of the equation-of-state fit (``b_method = "eos"``) when the
    fit succeeds and its equilibrium volume V0 lies within ``trust`` (fraction)
    of the template volume. Otherwise E(V) has no usable minimum (typical for a
    crystal far from equilibrium, e.g. under high pressure at the template
    volume) and B0 would be an extrapolation far outside the +-2 % scan; the
    value is then the bulk modulus at the template volume, V d2E/dV2 from a
    quadratic fit (``b_method = "local"``, with the reason in ``eos_error``).
    ``b_local`` is reported in both cases, and ``mechanically_unstable`` is true
    when it is not positive: E(V) is concave at the template volume, so the
    crystal would expand or collapse there (a negative returned value means this).
    """
    b_local = local_bulk_modulus(volumes, energies, template_volume)
    details: dict = {"b_local": b_local, "eos": eos, "mechanically_unstable": b_local <= 0.0}
    try:
        b_gpa, v0, e0 = fit_bulk_modulus(volumes, energies, eos)
    except ValueError as exc:
        details.update(b_method="local", eos_error=str(exc))
        return b_local, details
    details["e0"] = e0
    return _b0_if_trusted(b_gpa, v0, b_local, details, volumes, template_volume, trust)


def _b0_if_trusted(b0: float, v0: float, b_local: float, details: dict,
                   volumes: Sequence[float], template_volume: float, trust: float
                   ) -> tuple[float, dict]:
    """B0 (``b_method = "eos"``) when the fitted V0 lies within ``trust`` of the template
    volume, else ``b_local`` with the reason; records ``v0`` and ``v0_in_range``."""
    details.update(v0=v0, v0_in_range=bool(min(volumes) <= v0 <= max(volumes)))
    if abs(v0 / template_volume - 1.0) > trust:
        details.update(b_method="local", eos_error=(
            f"fitted V0 = {v0:.4g} Å^3 is more than {trust:.0%} from the template volume"))
        return b_local, details
    details["b_method"] = "eos"
    return b0, details


def birch_murnaghan_pressure(volumes, v0: float, b0: float, b_prime: float) -> np.ndarray:
    """P(V) of the third-order Birch-Murnaghan equation of state (units of ``b0``).

    Args:
      volumes: cell volumes, [n] (Å^3).
      v0: equilibrium volume (Å^3).
      b0: bulk modulus at ``v0`` (GPa gives GPa).
      b_prime: its pressure derivative B0'.
    """
    x = (v0 / np.asarray(volumes, dtype=float)) ** (2.0 / 3.0)
    return 1.5 * b0 * (x**3.5 - x**2.5) * (1.0 + 0.75 * (b_prime - 4.0) * (x - 1.0))


def local_bulk_modulus_from_pressures(volumes: Sequence[float], pressures: Sequence[float],
                                      v: float) -> float:
    """B = -V dP/dV (GPa) at volume ``v`` from a straight line through P(V)."""
    slope = np.polyfit(np.asarray(volumes, dtype=float), np.asarray(pressures, dtype=float), 1)[0]
    return float(-slope * v)


def fit_pressure_eos(volumes: Sequence[float], pressures: Sequence[float],
                     b_prime: float | None = None) -> tuple[float, float, float]:
    """Birch-Murnaghan fit of P(V).

    Three or more volumes fit V0, B0 and B0'; two determine V0 and B0 with B0' fixed at
    ``b_prime`` (default :data:`DEFAULT_B_PRIME` for two volumes, fitted otherwise).

    Args:
      volumes: cell volumes, [n >= 2] (Å^3).
      pressures: pressures at them (GPa).
      b_prime: fixed B0', or None as above.

    Returns:
      (B0 in GPa, V0 in Å^3, B0').

    Raises:
      ValueError: P(V) does not fall with V (no positive B0) or the fit did not converge.
    """
    v = np.asarray(volumes, dtype=float)
    p = np.asarray(pressures, dtype=float)
    if len(set(v.tolist())) < 2 or not np.isfinite(p).all():
        raise ValueError("a pressure fit needs finite pressures at two or more volumes")
    if b_prime is None and len(set(v.tolist())) < 3:
        b_prime = DEFAULT_B_PRIME
    v_mid = float(np.mean(v))
    b_guess = local_bulk_modulus_from_pressures(v, p, v_mid)
    if b_guess <= 0.0:
        raise ValueError(f"the pressure rises with the volume (local B = {b_guess:.4g} GPa): "
                         "no equilibrium to fit")
    p_mid = float(np.polyval(np.polyfit(v, p, 1), v_mid))
    v_guess = v_mid * float(np.exp(np.clip(p_mid / b_guess, -0.5, 0.5)))
    scale = max(b_guess, 1.0)  # residuals relative to B, parameters of order one

    def residual(x: np.ndarray) -> np.ndarray:
        bp = b_prime if b_prime is not None else x[2]
        return (birch_murnaghan_pressure(v, x[0] * v_mid, x[1] * scale, bp) - p) / scale

    start = [v_guess / v_mid, b_guess / scale] + ([] if b_prime is not None else [DEFAULT_B_PRIME])
    low = [0.3, 1e-6] + ([] if b_prime is not None else [-10.0])
    high = [3.0, 1e3] + ([] if b_prime is not None else [30.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = least_squares(residual, start, bounds=(low, high), xtol=1e-12, ftol=1e-12)
    v0, b0 = float(fit.x[0] * v_mid), float(fit.x[1] * scale)
    bp = float(b_prime if b_prime is not None else fit.x[2])
    worst = float(np.max(np.abs(fit.fun))) * scale
    exact = len(set(v.tolist())) <= (2 if b_prime is not None else 3)
    # an exactly determined fit must pass through the points (to 0.001 GPa, pw.x's printed
    # precision); an overdetermined one within 10 % of the pressure range (pw.x's pressures
    # scatter by 0.01 GPa)
    tolerance = max(1e-6 * scale, 1e-3) if exact else 0.1 * float(np.ptp(p)) + 0.05
    if not fit.success or not np.isfinite([v0, b0, bp]).all() or worst > tolerance:
        raise ValueError(f"the pressure fit did not converge (worst residual {worst:.3g} GPa)")
    if np.any(fit.active_mask != 0):
        raise ValueError(f"the pressure fit ran into a bound of its parameters (V0 = {v0:.4g} "
                         f"Å^3, B0 = {b0:.4g} GPa, B0' = {bp:.3g})")
    return b0, v0, bp


#: B0' that :func:`fit_equilibrium_pressures` accepts from a fit (typical solids: 3.5-6)
B_PRIME_RANGE = (1.0, 12.0)


def fit_equilibrium_pressures(volumes: Sequence[float], pressures: Sequence[float],
                              min_span: float = 0.02) -> tuple[float, float, float, bool]:
    """The zero-pressure search's fit (``relax`` with ``relax_search: pressure``): B0 (GPa), V0
    (Å^3), B0' and whether B0' was fitted.

    B0' is fitted (:func:`fit_pressure_eos`) when three or more volumes span at least
    ``min_span`` in lattice constant (the search's step) and the fit's B0' lies in
    :data:`B_PRIME_RANGE`; else it is fixed at :data:`DEFAULT_B_PRIME` (a least-squares
    fit, or, where that misses the points, the two volumes around P = 0). Three close
    volumes determine B0' from the curvature of P(V) alone, which pressure noise can
    dominate: at the pressure runs' SCF threshold pw.x's pressure moves by about 0.005
    GPa, at the preset's (after the ``preset_threshold`` remedy) by up to 0.08, and 0.05
    GPa on a 10 GPa crystal gave B0' outside 1-10 in about 40 % of synthetic searches;
    B0 and V0 with B0' fixed stay within a few % there.

    Raises:
      ValueError: no fit (P does not fall with V, or it does not converge).
    """
    v = np.asarray(volumes, dtype=float)
    span = (float(v.max()) / float(v.min())) ** (1.0 / 3.0) - 1.0
    if len(set(v.tolist())) >= 3 and span >= min_span * (1.0 - 1e-6):
        try:
            b0, v0, bp = fit_pressure_eos(v, pressures)
        except ValueError:  # no free fit (noise): B0' fixed below
            bp = float("nan")
        if B_PRIME_RANGE[0] <= bp <= B_PRIME_RANGE[1]:
            return b0, v0, bp, True
    p = np.asarray(pressures, dtype=float)
    try:
        b0, v0, bp = fit_pressure_eos(v, p, b_prime=DEFAULT_B_PRIME)
    except ValueError:
        # the points missed by more than the residual check allows (noise, or a B0' far
        # from 4): through the two volumes around P = 0 only, exactly determined
        order = np.argsort(v)
        change = [i for i in range(len(v) - 1) if p[order[i]] * p[order[i + 1]] <= 0.0]
        pair = order[change[0]:change[0] + 2] if change else np.argsort(np.abs(p))[:2]
        b0, v0, bp = fit_pressure_eos(v[pair], p[pair], b_prime=DEFAULT_B_PRIME)
    return b0, v0, bp, False


def bulk_modulus_from_pressures(
    volumes: Sequence[float], pressures: Sequence[float], template_volume: float,
    trust: float = 0.2,
) -> tuple[float, dict]:
    """Bulk modulus (GPa) from pressures at two or more volumes, and how it was obtained.

    As :func:`bulk_modulus_from_scan`, with P(V) instead of E(V): B0 of the Birch-Murnaghan
    fit of P(V) (:func:`fit_pressure_eos`, ``b_method = "eos"``) when it succeeds and V0
    lies within ``trust`` of the template volume; else the bulk modulus at the template
    volume, -V dP/dV of a straight line through the pressures (``b_method = "local"``,
    ``eos_error`` says why). The pressure is pw.x's analytic stress, a first derivative of
    E, so its slope is far less noisy than E(V)'s curvature (a small difference of large
    energies) and two volumes suffice. A basis that is not converged adds a nearly constant
    (Pulay) offset d, which cancels from dP/dV but moves V0 by about d / B, so B0 by about
    B0' d (d = -0.02 to -1.8 GPa on the validation crystals and three oxides at the
    ``default`` preset's cutoffs, docs/DFT.md).
    ``b_local`` is reported in both cases and ``mechanically_unstable`` is true when it is
    not positive.
    """
    if len(set(map(float, volumes))) < 2 or len(pressures) != len(volumes) \
            or not np.isfinite(np.asarray(pressures, dtype=float)).all():
        raise ValueError("a bulk modulus from pressures needs finite pressures at two or "
                         "more different volumes")
    b_local = local_bulk_modulus_from_pressures(volumes, pressures, template_volume)
    details: dict = {"b_local": b_local, "eos": "birchmurnaghan-pressure",
                     "mechanically_unstable": b_local <= 0.0}
    try:
        b_gpa, v0, b_prime = fit_pressure_eos(volumes, pressures)
    except ValueError as exc:
        details.update(b_method="local", eos_error=str(exc))
        return b_local, details
    details.update(b_prime=b_prime, b_prime_fitted=len(set(map(float, volumes))) >= 3)
    return _b0_if_trusted(b_gpa, v0, b_local, details, volumes, template_volume, trust)


def energy_at_volume(volumes: Sequence[float], energies: Sequence[float],
                     pressures: Sequence[float], v: float) -> float:
    """E(v) (eV) from runs at ``volumes`` (Å^3) with their energies (eV) and pressures
    (GPa, P = -dE/dV): the cubic Hermite interpolation between the two runs around ``v``;
    outside them, the nearest run's energy minus its pressure's work, -P_n (v - V_n)."""
    order = np.argsort(np.asarray(volumes, dtype=float))
    vols = np.asarray(volumes, dtype=float)[order]
    e = np.asarray(energies, dtype=float)[order]
    slope = -np.asarray(pressures, dtype=float)[order] * GPa  # dE/dV, eV/Å^3
    if not vols[0] <= v <= vols[-1]:
        n = int(np.argmin(np.abs(vols - v)))
        return float(e[n] + slope[n] * (v - vols[n]))
    i = min(int(np.searchsorted(vols, v, side="right")) - 1, len(vols) - 2)
    h = vols[i + 1] - vols[i]
    t = (v - vols[i]) / h
    return float((2 * t**3 - 3 * t**2 + 1) * e[i] + (t**3 - 2 * t**2 + t) * h * slope[i]
                 + (-2 * t**3 + 3 * t**2) * e[i + 1] + (t**3 - t**2) * h * slope[i + 1])


@dataclasses.dataclass
class MinimumSearch:
    """Outcome of :func:`search_energy_minimum`.

    Attributes:
      points: lattice-constant factor -> energy (eV), every point evaluated, in order.
      found: a minimum lies strictly inside the points (bracketed), and ``window`` holds
        the points to fit around it.
      best: the factor of the lowest energy.
      window: factors of the fit window around the minimum, ascending (empty unless found).
      reason: why no minimum was found ('' when found).
    """

    points: dict[float, float]
    found: bool
    best: float
    window: list[float]
    reason: str = ""


def search_energy_minimum(
    energy: Callable[[float], float], step: float = 0.02,
    bounds: tuple[float, float] = (0.8, 1.3), max_runs: int = 12,
) -> MinimumSearch:
    """Bracket and sample the minimum of E(s), s the factor on the lattice constants.

    1. Bracket: E at 1 - step, 1, 1 + step; while the lowest point is an end of the points,
       step beyond it (``step``, then doubling each time in that direction, clipped at
       ``bounds``; a step that reaches a bound is followed by one a ``step`` inside it).
       No minimum: the lowest point is a bound, or the next step would leave fewer than
       :data:`REFINE_RUNS` of ``max_runs``.
    2. Window: around the vertex of the parabola through the lowest point and its two
       neighbours (on the half-step grid, so points already run are reused), the five
       factors vertex + k x step / 2, k = -2..2, within ``bounds``; re-centred (up to
       twice, within ``max_runs``) when its lowest point is an end of it.

    Args:
      energy: s -> total energy (eV); an exception it raises propagates (a failed run).
      step: lattice-constant step (fraction).
      bounds: (smallest, largest) factor.
      max_runs: most calls of ``energy``.
    """
    low, high = bounds
    points: dict[float, float] = {}

    def grid(x: float) -> float:  # the half-step grid through 1, clipped to the bounds
        x = 1.0 + round((x - 1.0) / (step / 2)) * (step / 2)
        return round(min(max(x, low), high), 9)

    def at(x: float) -> float:
        x = round(min(max(x, low), high), 9)
        if x not in points:
            points[x] = float(energy(x))
        return x

    def lowest(keys) -> float:
        return min(keys, key=points.__getitem__)

    for x in (1.0 - step, 1.0, 1.0 + step):
        at(x)
    doubling = {-1: 0, 1: 0}
    while True:
        order = sorted(points)
        best = lowest(order)
        if best not in (order[0], order[-1]):
            break
        direction = -1 if best == order[0] else 1
        bound = low if direction < 0 else high
        inside = round(bound - direction * step, 9)
        if abs(best - bound) < 1e-9 and inside not in points \
                and len(points) + REFINE_RUNS < max_runs:
            at(inside)  # the step that reached the bound may have passed the minimum
            continue
        if abs(best - bound) < 1e-9:
            side = "smallest" if direction < 0 else "largest"
            return MinimumSearch(dict(points), False, best, [], (
                f"E(V) still falls at the {side} lattice-constant factor searched "
                f"({bound:g}): no minimum in {low:g}-{high:g}"))
        if len(points) + 1 + REFINE_RUNS > max_runs:
            return MinimumSearch(dict(points), False, best, [], (
                f"no E(V) minimum bracketed within {max_runs} runs (lattice-constant "
                f"factors {order[0]:g}-{order[-1]:g} searched)"))
        at(best + direction * step * 2 ** doubling[direction])
        doubling[direction] += 1
    order = sorted(points)
    i = order.index(best)
    xs = order[i - 1:i + 2]
    a, b, _ = np.polyfit(xs, [points[x] for x in xs], 2)
    centre = min(max(grid(float(-b / (2 * a)) if a > 0 else best), xs[0]), xs[2])
    for _ in range(3):
        window = sorted({grid(centre + k * step / 2) for k in range(-2, 3)})
        for x in window:
            if x not in points and len(points) < max_runs:
                at(x)
        window = [x for x in window if x in points]
        if not window:
            break
        best = lowest(window)
        if window[0] < best < window[-1] or len(points) >= max_runs:
            break
        centre = best
    # the lowest point of all is bracketed: fit at least it and its evaluated neighbours
    order = sorted(points)
    best = lowest(order)
    i = order.index(best)
    if i in (0, len(order) - 1):  # E(V) rose and fell again (more than one minimum)
        return MinimumSearch(dict(points), False, best, [], (
            f"no single E(V) minimum: the lowest energy is at the end ({best:g}) of the "
            f"lattice-constant factors searched ({order[0]:g}-{order[-1]:g})"))
    window = sorted(set(window) | {order[i - 1], best, order[i + 1]})
    return MinimumSearch(dict(points), True, best, window)


@dataclasses.dataclass
class ZeroPressureSearch:
    """Outcome of :func:`search_zero_pressure`.

    Attributes:
      points: lattice-constant factor -> pressure (GPa), every point evaluated, in order.
      found: P changes sign between two points (a zero is bracketed), and ``window`` holds
        the points to fit around it.
      zero: the factor of the zero estimated from the points (P linear in ln V between the
        two that bracket it; ``nan`` unless found).
      window: factors of the fit window, ascending (empty unless found).
      reason: why no zero was found ('' when found).
    """

    points: dict[float, float]
    found: bool
    zero: float
    window: list[float]
    reason: str = ""


def search_zero_pressure(
    pressure: Callable[[float], float], step: float = 0.02,
    bounds: tuple[float, float] = (0.8, 1.3), max_runs: int = 12,
) -> ZeroPressureSearch:
    """Bracket and refine the zero of P(s), s the factor on the lattice constants: the
    equilibrium volume under isotropic scaling, from pw.x's pressure (P = -dE/dV, so its
    zero is the E(V) minimum; ``recipe.relax`` with ``relax_search: pressure``).

    1. P at 1, then one ``step`` towards the zero (larger if P > 0: the cell wants to
       expand). While P keeps its sign, the next factor is the secant estimate of the zero
       (P linear in ln V through the last two points) overshot by 20 %, moving at least
       ``step`` / 2 and at most ``step`` x 2^k (k = 0, 1, ... per move), clipped at
       ``bounds``; where P does not fall with V between them, one such largest move.
    2. Once P changes sign between two neighbouring factors, the zero is estimated between
       them; unless a point lies within ``step`` / 4 of it, P is computed there too (up to
       :data:`REFINE_ZERO_RUNS` times). The window is the points within 2 ``step`` of the
       zero and the two around it (the neighbours of a run where P is exactly 0); with
       fewer than three, one more point ``step`` from the
       zero, on the side farther from the points (B0' is fitted from three volumes).

    Typically 3 runs (a crystal within a few % of equilibrium), against 5-8 for
    :func:`search_energy_minimum`. No zero: P keeps its sign up to a bound, or
    ``max_runs`` runs did not bracket it.

    Args:
      pressure: s -> pressure (GPa); an exception it raises propagates (a failed run).
      step: lattice-constant step (fraction).
      bounds: (smallest, largest) factor.
      max_runs: most calls of ``pressure``.
    """
    low, high = bounds
    points: dict[float, float] = {}

    def at(x: float) -> float:
        x = round(min(max(x, low), high), 9)
        if x not in points:
            points[x] = float(pressure(x))
        return x

    def zero_between(a: float, b: float) -> float:  # P linear in ln V between a and b
        pa, pb = points[a], points[b]
        if pa == pb:
            return 0.5 * (a + b)
        t = pa / (pa - pb)
        return float(np.exp(np.log(a) + t * (np.log(b) - np.log(a))))

    def bracket() -> tuple[float, float] | None:
        order = sorted(points)
        for a, b in zip(order, order[1:]):
            if points[a] == 0.0:
                return a, a
            if points[a] * points[b] < 0.0 or points[b] == 0.0:
                return (b, b) if points[b] == 0.0 else (a, b)
        return None

    last = at(1.0)
    previous = None
    moves = 0
    while bracket() is None:
        direction = 1.0 if points[last] > 0.0 else -1.0
        bound = high if direction > 0 else low
        if abs(last - bound) < 1e-9:
            side = "largest" if direction > 0 else "smallest"
            sign = "positive" if direction > 0 else "negative"
            return ZeroPressureSearch(dict(points), False, float("nan"), [], (
                f"the pressure is still {sign} ({points[last]:.4g} GPa) at the {side} "
                f"lattice-constant factor searched ({bound:g}): no E(V) minimum in "
                f"{low:g}-{high:g}"))
        if len(points) >= max_runs:
            return ZeroPressureSearch(dict(points), False, float("nan"), [], (
                f"no zero of the pressure bracketed within {max_runs} runs (lattice-constant "
                f"factors {min(points):g}-{max(points):g} searched)"))
        largest = step * 2 ** moves
        move = largest if previous is None else step
        if previous is not None:
            slope = (points[last] - points[previous]) / (np.log(last) - np.log(previous))
            if slope < 0.0:  # P falls with V: aim past the secant's zero
                shift = float(np.clip(-1.2 * points[last] / slope, -1.0, 1.0))  # in ln s
                target = last * float(np.exp(shift))
                move = min(max(abs(target - last), step / 2), largest)
            else:
                move = largest
        previous, last = last, at(last + direction * move)
        moves += 1
    a, b = bracket()
    zero = a if a == b else zero_between(a, b)
    for _ in range(REFINE_ZERO_RUNS):
        if min(abs(x - zero) for x in points) <= step / 4 or len(points) >= max_runs:
            break
        at(zero)
        a, b = bracket()  # the refinement point splits the bracket
        zero = a if a == b else zero_between(a, b)
    order = sorted(points)
    around = {a, b} if a != b else set(order[max(0, order.index(a) - 1):order.index(a) + 2])
    window = {x for x in points if abs(x - zero) <= 2 * step} | around
    if len(window) < 3 and len(points) < max_runs:  # B0' needs a third volume
        sides = [round(min(max(zero + d, low), high), 9) for d in (-step, step)]
        window.add(at(max(sides, key=lambda x: min(abs(x - y) for y in points))))
    return ZeroPressureSearch(dict(points), True, zero, sorted(window))
