"""`EnvConfig`: every knob of an env, validated, loadable from dicts and YAML."""

from __future__ import annotations

import builtins
import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

from crystaljax.config import ConfigError, from_mapping, option
from crystaljax.elements import UnknownElementError, get_vocabulary
from crystaljax.env.charge_balance import MASK_CHOICES
from crystaljax.oracles.base import HostOracle
from crystaljax.properties import get_property
from crystaljax.templates.core import CrystalTemplate, from_cif, from_mp20_csv
from crystaljax.templates.graph import GraphConfig
from crystaljax.templates.prototypes import list_prototypes, prototype

#: hard cap on template size unless ``max_sites`` is set explicitly
DEFAULT_MAX_SITES_LIMIT = 64


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Configuration of a :class:`~crystaljax.env.env.CrystalEnv`.

    Attributes:
      template: one template or a list (mixed mode: one drawn per reset). Each is a
        CrystalTemplate, a prototype name (``crystaljax.templates.list_prototypes()``),
        a path to a ``.cif`` file, or ``"mp20:PATH.csv:ROW"``.
      template_weights: sampling weights of the templates (default uniform).
      vocab: 'small' | 'medium' | 'large' or a list of element symbols.
      property: a name of the property registry ('density' | 'bulk_modulus' | 'band_gap').
      target: target value in the property's unit (default: CrystalGym's).
      oracle: a name of the oracle registry ('analytic' = in-graph, density only; 'qe' =
        Quantum ESPRESSO) or a HostOracle instance.
      oracle_options: the oracle's typed options as a mapping (e.g. ``{"preset": "fast"}``
        for QE, see QEOptions), checked when the config is built.
      substitution: start from random elements and replace one per step.
      graph: neighbour-graph settings (GraphConfig or dict).
      max_sites, max_edges: static padding (default: the largest template; sites
        capped at 64 unless given).
      num_rbf, rbf_max: Gaussian edge expansion: num_rbf centres on [0, rbf_max] Å.
      beta, floor, penalty: reward parameters (default: the property's, see rewards).
      mask: the observation's ``action_mask``: 'none' (every element) or 'charge_balance'
        (only elements that keep a charge-neutral crystal in common oxidation states
        possible; see crystaljax.env.charge_balance).
    """

    template: Any = "cg-perovskite-4.27"
    template_weights: Sequence[float] | None = None
    vocab: Any = "small"
    property: str = "density"
    target: float | None = None
    oracle: Any = "analytic"
    oracle_options: dict = dataclasses.field(default_factory=dict)
    substitution: bool = False
    graph: Any = dataclasses.field(default_factory=GraphConfig)
    max_sites: int | None = None
    max_edges: int | None = None
    num_rbf: int = 16
    rbf_max: float = 6.0
    beta: float = 1.0
    floor: float = -5.0
    penalty: float | None = None
    mask: str = option("none", choices=MASK_CHOICES)

    @classmethod
    def from_dict(cls, values: dict, where: str = "config") -> "EnvConfig":
        """Build from a plain dict (e.g. YAML); unknown keys raise ConfigError."""
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - valid, key=str)
        if unknown:
            raise ConfigError(f"{where}: unknown config key(s) {unknown}; valid keys: {sorted(valid)}")
        return cls(**values).validated(where)

    def to_dict(self) -> dict:
        """Plain-data form (for YAML); a HostOracle or template object stays as it is."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["graph"] = dataclasses.asdict(self.graph) if dataclasses.is_dataclass(self.graph) \
            else self.graph
        return out

    def replace(self, **overrides) -> "EnvConfig":
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {sorted(valid)}")
        return dataclasses.replace(self, **overrides).validated()

    def validated(self, where: str = "config") -> "EnvConfig":
        """Check every field; returns self with the graph normalised to GraphConfig."""
        try:
            prop = get_property(self.property)
            if self.target is not None:
                prop.check_target(self.target)
            _check_vocab(self.vocab)
            _check_weights(self.template_weights)
            self._check_oracle()
            graph = self.graph
            if isinstance(graph, dict):
                graph = from_mapping(GraphConfig, graph, "graph")
            elif not isinstance(graph, GraphConfig):
                raise ConfigError(f"graph must be a mapping or GraphConfig, got {type(graph).__name__}")
            for name in ("max_sites", "max_edges"):
                v = getattr(self, name)
                if v is not None and (not isinstance(v, int) or v < 1):
                    raise ConfigError(f"{name} must be a positive integer, got {v!r}")
            if not isinstance(self.num_rbf, int) or self.num_rbf < 1:
                raise ConfigError(f"num_rbf must be a positive integer, got {self.num_rbf!r}")
            _check_number("rbf_max", self.rbf_max, positive=True, unit=" Å")
            _check_number("beta", self.beta, positive=True)
            _check_number("floor", self.floor)
            if self.penalty is not None:
                _check_number("penalty", self.penalty)
            if not isinstance(self.substitution, bool):
                raise ConfigError(f"substitution must be true or false, got {self.substitution!r}")
            if not isinstance(self.mask, str) or self.mask not in MASK_CHOICES:
                raise ConfigError(f"mask must be one of {list(MASK_CHOICES)}, got {self.mask!r}")
        except UnknownElementError:
            raise
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return dataclasses.replace(self, graph=graph) if graph is not self.graph else self

    def _check_oracle(self) -> None:
        """The oracle exists, computes the property and its options are valid."""
        if not isinstance(self.oracle_options, dict):
            raise ConfigError(f"oracle_options must be a mapping, got {self.oracle_options!r}")
        if isinstance(self.oracle, str):
            from crystaljax.oracles.registry import get_oracle

            get_oracle(self.oracle, self.property).parse_options(
                self.oracle_options, "oracle_options")
        elif not isinstance(self.oracle, HostOracle):
            raise ConfigError(f"oracle must be an oracle name or a HostOracle, got {self.oracle!r}")
        elif self.oracle_options:
            raise ConfigError("oracle_options apply to a named oracle, not a HostOracle object")

    @builtins.property
    def resolved_target(self) -> float:
        prop = get_property(self.property)
        return prop.default_target if self.target is None else float(self.target)

    @builtins.property
    def resolved_penalty(self) -> float:
        prop = get_property(self.property)
        return prop.default_penalty if self.penalty is None else float(self.penalty)


def _check_number(name: str, value: Any, positive: bool = False, unit: str = "") -> float:
    """A finite number (> 0 with ``positive``), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"{name} must be > 0{unit}, got {value!r}")
    return float(value)


def _check_vocab(vocab: Any) -> None:
    """A vocabulary name or a list of element symbols."""
    if isinstance(vocab, str):
        get_vocabulary(vocab)
        return
    if not isinstance(vocab, (list, tuple)) or not all(isinstance(v, str) for v in vocab):
        raise ConfigError(f"vocab must be 'small', 'medium', 'large' or a list of element "
                          f"symbols, got {vocab!r}")
    get_vocabulary(vocab)


def _check_weights(weights: Any) -> None:
    """None or finite numbers >= 0 with a positive sum (the count is checked in make)."""
    if weights is None:
        return
    ok = isinstance(weights, (list, tuple)) and len(weights) > 0 and all(
        not isinstance(w, bool) and isinstance(w, (int, float)) and math.isfinite(w) and w >= 0
        for w in weights)
    if not ok or sum(weights) <= 0:
        raise ConfigError("template_weights must be finite numbers >= 0 with a positive sum, "
                          f"got {weights!r}")


def resolve_template(item: Any) -> CrystalTemplate:
    """A CrystalTemplate from a template, prototype name, CIF path or 'mp20:PATH:ROW'."""
    if isinstance(item, CrystalTemplate):
        return item
    if not isinstance(item, str):
        raise ConfigError(f"template must be a name, a path or a CrystalTemplate, got {item!r}")
    if item.startswith("mp20:"):
        path, _, row = item[5:].rpartition(":")
        if not path or not row.isdigit():
            raise ConfigError(f"template {item!r}: use 'mp20:PATH.csv:ROW' with a row number")
        return from_mp20_csv(path, int(row))
    if item.lower().endswith(".cif") or os.path.sep in item:
        return from_cif(item)
    if item in list_prototypes():
        return prototype(item)
    raise ConfigError(
        f"unknown template {item!r}: not a prototype ({', '.join(list_prototypes())}), "
        "a .cif path or 'mp20:PATH.csv:ROW'"
    )


def resolve_templates(template: Any) -> list[CrystalTemplate]:
    items = template if isinstance(template, (list, tuple)) else [template]
    if not items:
        raise ConfigError("template list is empty")
    return [resolve_template(t) for t in items]
