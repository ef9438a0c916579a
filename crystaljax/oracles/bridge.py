"""The host-oracle bridge: one batched ``jax.pure_callback`` per env step.

Under ``vmap`` the callback is declared with ``vmap_method="broadcast_all"``, so the
host receives the whole batch (any number of leading axes), the terminal mask and the
reward parameters, builds pymatgen Structures of the finished crystals only, and calls
the oracle once with all of them. Each evaluation is recorded with its tokens, template
and the reward the step gives it (the registry's reward function, on the host with
NumPy: a failure gets the penalty, a ``NO_MINIMUM`` outcome the floor). Nothing raises
across the callback: errors become ``Status.ORACLE_ERROR`` results with the reason
recorded.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from crystaljax.oracles.base import (
    FLOOR_STATUSES,
    HostOracle,
    OracleResult,
    Status,
    close_oracle,
    oracle_counters,
)
from crystaljax.properties import get_property
from crystaljax.rewards import RewardParams
from crystaljax.templates.core import CrystalTemplate

log = logging.getLogger(__name__)


@dataclasses.dataclass
class OracleRecord:
    """One evaluated crystal, as kept by the bridge.

    template, template_id: name and row of the template; tokens: element index per real
    site; symbols: their element symbols; formula: reduced formula; value: property
    (nan on failure); status: Status code; reason: failure reason; seconds: compute time;
    reward: the reward the env step gives this evaluation.
    """

    template: str
    template_id: int
    tokens: tuple[int, ...]
    formula: str
    symbols: tuple[str, ...]
    value: float
    status: int
    reason: str
    seconds: float
    reward: float


class HostOracleBridge:
    """Connects a :class:`HostOracle` to the jitted env step.

    Attributes:
      records: the most recent evaluations (bounded deque of :class:`OracleRecord`).
      status_counts: Counter of evaluations by :class:`Status` name.
      calls: number of host calls that had at least one finished crystal.
      total_records: evaluations recorded since creation (keeps counting when the
        bounded ``records`` deque drops old entries).
    """

    def __init__(self, oracle: HostOracle, vocab: Sequence[str],
                 templates: Sequence[CrystalTemplate], max_records: int = 100_000):
        self.oracle = oracle
        self.property = get_property(oracle.property_name)
        self.closed = False
        self.vocab = tuple(vocab)
        self.templates = tuple(templates)
        self.records: collections.deque[OracleRecord] = collections.deque(maxlen=max_records)
        self.status_counts: collections.Counter[str] = collections.Counter()
        self.calls = 0
        self.total_records = 0

    # ---- host side -------------------------------------------------------------------
    def symbols_of(self, tokens: np.ndarray, template_id: int) -> tuple[str, ...]:
        """Element symbols of the real sites of one env (empty sites are an error)."""
        n = self.templates[template_id].num_sites
        return tuple(self.vocab[int(k)] for k in tokens[:n])

    def _evaluate(self, structures, names):
        try:
            results = list(self.oracle.evaluate(structures))
            if len(results) != len(structures):
                raise RuntimeError(
                    f"oracle returned {len(results)} results for {len(structures)} crystals")
            return results
        except Exception as exc:  # never let an oracle bug cross the callback
            log.exception("host oracle %r failed on %s", type(self.oracle).__name__, names)
            return [OracleResult.failure(Status.ORACLE_ERROR, f"{type(exc).__name__}: {exc}")
                    for _ in structures]

    def stats(self) -> dict:
        """``evaluations`` (crystals scored), ``computed`` (of those, computed rather than
        read from a cache), ``cache_hits`` and ``by_status`` (evaluations by Status name);
        and, when the oracle reports them (the QE oracle), ``dft_seconds``,
        ``batch_seconds`` and ``core_utilisation`` (busy core-seconds / available over
        its batches). Counters of this process: a resumed run starts them again."""
        counters = oracle_counters(self.oracle) or {}
        evaluations = sum(self.status_counts.values())
        out = {"evaluations": evaluations,
               "computed": int(counters.get("computed", evaluations)),
               "cache_hits": int(counters.get("cache_hits", 0)),
               "by_status": dict(self.status_counts)}
        for key in ("dft_seconds", "batch_seconds", "core_utilisation"):
            if key in counters:
                out[key] = float(counters[key])
        return out

    def records_since(self, seen: int) -> tuple[list[OracleRecord], int]:
        """(records after the first ``seen`` ever made, total made so far); the bounded
        deque may have dropped the oldest of them."""
        new = min(self.total_records - seen, len(self.records))
        records = list(self.records)[len(self.records) - new:] if new > 0 else []
        return records, self.total_records

    def close(self) -> None:
        """Close the oracle (its pool, client and cache); idempotent."""
        if not self.closed:
            self.closed = True
            close_oracle(self.oracle)

    def host_call(self, tokens, template_ids, terminated, target, beta, floor, penalty):
        """Host function: ``tokens [..., S]``, ``template_ids [...]``, ``terminated [...]``,
        reward params ``[...]`` -> ``(values f32 [...], status int32 [...])`` with
        NOT_EVALUATED where not terminal."""
        tokens = np.asarray(tokens)
        lead = np.shape(terminated)
        flat_tokens = tokens.reshape(-1, tokens.shape[-1])
        flat_tids = np.asarray(template_ids).reshape(-1)
        flat_term = np.asarray(terminated).reshape(-1).astype(bool)
        values = np.full(flat_term.shape, np.nan, np.float32)
        status = np.full(flat_term.shape, int(Status.NOT_EVALUATED), np.int32)
        idx = np.flatnonzero(flat_term)
        if len(idx):
            self.calls += 1
            structures, names, symbols_list = [], [], []
            for i in idx:
                tid = int(flat_tids[i])
                symbols = self.symbols_of(flat_tokens[i], tid)
                symbols_list.append(symbols)
                structures.append(self.templates[tid].to_structure(symbols))
                names.append(self.templates[tid].name)
            t0 = time.perf_counter()
            results = self._evaluate(structures, names)
            log.debug("host oracle: %d crystals in %.2fs", len(idx), time.perf_counter() - t0)
            reward_params = RewardParams(*(np.asarray(x, np.float32).reshape(-1)[idx]
                                           for x in (target, beta, floor, penalty)))
            values[idx] = [res.value if res.status == Status.OK else np.nan for res in results]
            status[idx] = [int(res.status) for res in results]
            rewards = self.property.reward(values[idx], status[idx], reward_params, xp=np)
            for j, (i, s, name, symbols, res) in enumerate(
                    zip(idx, structures, names, symbols_list, results)):
                self.status_counts[Status(res.status).name] += 1
                self.total_records += 1
                self.records.append(OracleRecord(
                    name, int(flat_tids[i]), tuple(int(k) for k in flat_tokens[i][:len(symbols)]),
                    s.composition.reduced_formula, symbols, float(res.value), int(res.status),
                    res.reason, float(res.seconds), float(rewards[j])))
                if res.status in FLOOR_STATUSES:  # an outcome (floor reward), not a failure
                    log.info("oracle status %s on %s (%s): %s", Status(res.status).name,
                             s.composition.reduced_formula, name, res.reason)
                elif res.status != Status.OK:
                    log.warning("oracle failure %s on %s (%s): %s", Status(res.status).name,
                                s.composition.reduced_formula, name, res.reason)
        return values.reshape(lead), status.reshape(lead)

    # ---- device side -----------------------------------------------------------------
    def __call__(self, tokens: jnp.ndarray, template_id: jnp.ndarray, terminated: jnp.ndarray,
                 reward_params: RewardParams) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Traceable: ``tokens [S]``, ``template_id []``, ``terminated []`` and the reward
        params (for the records) -> (value f32 [], status int32 [])."""
        out = (jax.ShapeDtypeStruct(terminated.shape, jnp.float32),
               jax.ShapeDtypeStruct(terminated.shape, jnp.int32))
        r = reward_params
        return jax.pure_callback(self.host_call, out, tokens, template_id, terminated,
                                 r.target, r.beta, r.floor, r.penalty,
                                 vmap_method="broadcast_all")
