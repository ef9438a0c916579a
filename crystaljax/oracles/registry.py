"""The oracle registry: what can compute a property, and the typed options of each.

An entry names an oracle (the env config's ``oracle:`` value), says whether it runs
inside the jitted step (``in_graph``) or on the host behind the bridge, names its typed
options dataclass (checked when the config is loaded, so a misspelt key fails early) and
builds it. Which properties an oracle computes is declared by the property registry
(``Property.oracles``). Adding an oracle is one :func:`register` call plus its code.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from crystaljax.config import ConfigError, add_entry, from_mapping
from crystaljax.properties import get_property, list_properties


@dataclasses.dataclass(frozen=True)
class OracleSpec:
    """One oracle.

    Attributes:
      name: the config spelling (``oracle: qe``).
      in_graph: True: ``build`` returns ``fn(tokens, template_id, params) -> (value,
        status)`` evaluated inside the jitted step (its ``can_fail`` attribute, False when
        absent, says whether a status can be other than OK); False: a HostOracle.
      options: ``"module:Class"`` of its typed options dataclass, or None (no options).
      build: host oracles ``(property_name, options) -> oracle``; in-graph ones
        ``(property_name, options, templates, vocab) -> fn`` (the env's templates and
        vocabulary, for per-template tables). ``options`` is an instance of the options
        class (or None).
      description: one line for listings.
    """

    name: str
    in_graph: bool
    options: str | None
    build: Callable[[str, Any], Any]
    description: str = ""

    def options_class(self) -> type | None:
        if self.options is None:
            return None
        module, _, cls = self.options.partition(":")
        try:
            return getattr(importlib.import_module(module), cls)
        except ImportError as exc:
            raise ConfigError(f"oracle {self.name!r} is not available: {exc}") from None

    def parse_options(self, options: Mapping[str, Any] | Any | None,
                      where: str = "oracle_options") -> Any:
        """The typed options of this oracle from a mapping (ConfigError on a bad key/value)."""
        cls = self.options_class()
        if cls is None:
            if options:
                raise ConfigError(f"{where}: oracle {self.name!r} takes no options, got "
                                  f"{sorted(options) if isinstance(options, Mapping) else options!r}")
            return None
        if isinstance(options, cls):
            return options
        return from_mapping(cls, options or {}, where)


ORACLES: dict[str, OracleSpec] = {}


def register(spec: OracleSpec) -> OracleSpec:
    """Add an oracle to the registry (its name must be new)."""
    return add_entry(ORACLES, spec, "oracle")


def get_oracle(name: str, property_name: str | None = None) -> OracleSpec:
    """The entry of oracle ``name``; with ``property_name``, also check it computes it."""
    if not isinstance(name, str) or name not in ORACLES:
        raise ConfigError(f"unknown oracle {name!r}; use one of {sorted(ORACLES)} or a HostOracle")
    spec = ORACLES[name]
    if property_name is not None and name not in get_property(property_name).oracles:
        able = [p for p in list_properties() if name in get_property(p).oracles]
        kind = "in-graph oracle" if spec.in_graph else f"oracle {name!r}"
        others = [o for o in get_property(property_name).oracles]
        raise ConfigError(f"there is no {kind} for {property_name!r} (it computes {able}); "
                          f"use oracle={others[0]!r} or pass a HostOracle")
    return spec


def oracles_for(property_name: str) -> list[str]:
    """Names of the registered oracles that compute ``property_name``."""
    return [o for o in get_property(property_name).oracles if o in ORACLES]


def _build_analytic(property_name: str, options: Any, templates=None, vocab=None):
    from crystaljax.oracles.analytic import IN_GRAPH_ORACLES

    return IN_GRAPH_ORACLES[property_name]


def _build_qe(property_name: str, options: Any):
    from crystaljax.oracles.qe.oracle import QEOracle

    return QEOracle.from_options(property_name, options)


def _build_chgnet_host(property_name: str, options: Any):
    from crystaljax.oracles.chgnet_host import build_host

    return build_host(property_name, options)


def _build_chgnet(property_name: str, options: Any, templates, vocab):
    from crystaljax.oracles.chgnet import build_in_graph

    return build_in_graph(property_name, options, templates, vocab)


register(OracleSpec("analytic", True, None, _build_analytic,
                    "in-graph jnp formulas (fixed-lattice density)"))
register(OracleSpec("chgnet", True, "crystaljax.oracles.chgnet:CHGNetOptions", _build_chgnet,
                    "CHGNet 0.3.0 ported to JAX, inside the jitted step (relax none | volume)"))
register(OracleSpec("chgnet-host", False, "crystaljax.oracles.chgnet_host:CHGNetHostOptions",
                    _build_chgnet_host,
                    "torch CHGNet on the host in a process pool (relax none | volume | full)"))
register(OracleSpec("qe", False, "crystaljax.oracles.qe.options:QEOptions", _build_qe,
                    "Quantum ESPRESSO pw.x in a process pool or on Dask"))

__all__ = ["ORACLES", "OracleSpec", "get_oracle", "oracles_for", "register"]
