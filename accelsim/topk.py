"""The hardware top-k unit: selects each sample's winners between a layer and the next broadcast.

It sits wherever a trace says a dynamic mask produced a layer's input (LayerRecord.premask,
.act_mask, .mask_params). For each sample it recomputes the mask from the recorded pre-mask
activations, compares it with the trace's mask (mismatches), and reports latency, the cycles it
delays the next layer (exposed), and comparisons (energy). Cost models: docs/hardware-model.md
("Hardware top-k unit"); n = elements per
sample, k = winners, P = comparators.

- "bitonic": N' = 2^m >= n; m(m+1)/2 stages of N'/2 compare-exchanges on P comparators.
  Barrier (needs the whole layer), exact.
- "insertion": k-cell streaming insertion sorter, P elements per cycle, then k cycles to drain.
  Streams with the producing layer; exact.
- "radix": ceil(b/r) passes of ceil(n/P) counter-update cycles plus a 2^r-bucket scan.
  Barrier, exact.
- "threshold": JPnet Eq. 11 threshold prediction: bitonic selection on the eps-subsample
  (barrier on the subsample), then n compares against theta that stream with the next layer's
  broadcast. Not exact.

The unit's mask comes from the scheme's own machine, run step by step on every sample
(accelsim.selection): the bitonic network, the k-cell insertion sorter, radix select on
value_bits-bit keys (the top bits of the float32 magnitude; 32 bits is exact, fewer bits tie
near-equal values and the lower index wins); the threshold scheme finds theta with the bitonic
network on the subsample. The *_reference functions at the end are the plain-Python versions of
those machines; the tests prove the machines and the closed-form costs against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from accelsim import maskfn
from accelsim.encoded import memo
from accelsim.errors import AccelsimError
from accelsim.selection import select_threshold, select_topk
from accelsim.traces.schema import LayerRecord, MaskParams, SparseBatch

SCHEMES = ("bitonic", "insertion", "radix", "threshold")
EXACT = {"bitonic": True, "insertion": True, "radix": True, "threshold": False}
BARRIER = {"bitonic": True, "insertion": False, "radix": True, "threshold": False}
TRACE_SCHEMES = ("topk", "threshold-prediction", "static-threshold")
DEFAULT_EPS = 0.1
_CHUNK_ELEMENTS = 1 << 22  # densify at most this many activations at a time


@dataclass
class TopkResult:
    """Per-sample (S,) int64 arrays of the top-k unit on one layer's input."""

    scheme: str
    latency: np.ndarray  # cycles the unit needs
    exposed: np.ndarray  # cycles it delays the next layer's start
    compares: np.ndarray  # comparisons (compare-exchanges, cell compares, counter updates)
    mismatches: np.ndarray  # |unit mask XOR trace mask|
    kept: np.ndarray  # winners the unit keeps
    barrier: bool  # must see the whole layer before deciding
    exact: bool  # keeps exactly the top-k
    theta: np.ndarray | None = None  # threshold per sample (threshold scheme), float32
    extra: dict = field(default_factory=dict)

    @property
    def counters(self) -> dict[str, int]:
        """Summed over samples, in the shared event vocabulary."""
        return {"topk_compare": int(self.compares.sum()),
                "topk_exposed_cycles": int(self.exposed.sum())}


# ----------------------------------------------------------------------------- cost models


def bitonic_cost(n, comparators: int) -> tuple[np.ndarray, np.ndarray]:
    """(latency, compare-exchanges) of a bitonic network on n elements padded to a power of two."""
    n = np.asarray(n, dtype=np.int64)
    m = np.array([max(int(v) - 1, 0).bit_length() for v in n.ravel()], dtype=np.int64)
    m = m.reshape(n.shape)
    stages = m * (m + 1) // 2
    half = (np.int64(1) << m) // 2
    latency = stages * _ceil_div(half, comparators)
    return latency, stages * half


def insertion_cost(n, k, comparators: int) -> tuple[np.ndarray, np.ndarray]:
    """(latency, compares): ceil(n/P) + k cycles; sum_{i<n} min(i, k) compares (gated cells)."""
    n = np.asarray(n, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    latency = _ceil_div(n, comparators) + k
    full = k * (k - 1) // 2 + (n - k) * k
    compares = np.where(n <= k, n * (n - 1) // 2, full)
    return latency, compares


def radix_cost(n, comparators: int, value_bits: int, radix_bits: int):
    """(latency, counter updates): ceil(b/r) passes of ceil(n/P) + 2^r cycles, n updates each."""
    n = np.asarray(n, dtype=np.int64)
    passes = -(-value_bits // radix_bits)
    return passes * (_ceil_div(n, comparators) + (1 << radix_bits)), passes * n


def _ceil_div(a, b):
    return -(-np.asarray(a, dtype=np.int64) // b)


# ----------------------------------------------------------------------------- the unit


def simulate_topk(
    layer: LayerRecord,
    *,
    scheme: str,
    comparators: int,
    value_bits: int,
    radix_bits: int,
    producer_cycles: np.ndarray | None = None,
) -> TopkResult:
    """Run the top-k unit on the recorded pre-mask input of `layer` (see the module docstring).

    producer_cycles: (S,) cycles of the layer producing these activations; a streaming scheme
    hides its work behind them (exposed = max(latency - producer_cycles, drain)). Without it,
    exposed = latency.
    """
    _check_config(scheme, comparators, value_bits, radix_bits)
    premask, act_mask, params = _mask_inputs(layer)
    s, n = premask.num_samples, premask.size
    where = f"layer {layer.name!r}"
    if producer_cycles is not None:
        producer_cycles = np.asarray(producer_cycles, dtype=np.int64)
        if producer_cycles.shape != (s,):
            raise AccelsimError(
                f"{where}: producer_cycles must have shape ({s},), got {producer_cycles.shape}"
            )

    trace_kept = act_mask.nnz_per_sample().astype(np.int64)
    if params.scheme != "static-threshold":
        if params.winner_rate is None:
            raise AccelsimError(
                f"{where}: mask scheme {params.scheme!r} needs a winner_rate in the trace"
            )
        k = np.full(s, maskfn.kept_count(n, params.winner_rate), dtype=np.int64)
    else:  # a static threshold has no winner rate: k (insertion cells) = what the trace kept
        k = trace_kept
    eps = params.eps if params.eps is not None else DEFAULT_EPS

    # functional: which mask does the unit compute? An exact unit computes what the trace says;
    # the threshold unit predicts. Either way the mask comes from the scheme's own machine.
    if EXACT[scheme]:
        mask_scheme = params.scheme
    else:
        static = params.scheme == "static-threshold"
        mask_scheme = "static-threshold" if static else "threshold-prediction"
    machine = "bitonic" if scheme == "threshold" else scheme  # threshold selects with bitonic
    key_bits = min(int(value_bits), 32)
    # The mask the unit computes depends on the layer, the scheme's selection machine and its
    # key widths only, never on the array: once per layer for every variant and sweep point
    # (accelsim.encoded).
    mismatches, kept, theta = memo(
        layer, "topk_mask",
        (mask_scheme, machine, key_bits, int(radix_bits), float(eps), scheme == "threshold"),
        lambda: _unit_mask(premask, act_mask, params, mask_scheme, machine, key_bits, radix_bits,
                           k, eps, scheme == "threshold", where))

    nn = np.full(s, n, dtype=np.int64)
    extra: dict = {"n": n, "k": k}
    if scheme == "bitonic":
        latency, compares = bitonic_cost(nn, comparators)
        exposed = latency.copy()
    elif scheme == "radix":
        latency, compares = radix_cost(nn, comparators, value_bits, radix_bits)
        exposed = latency.copy()
    elif scheme == "insertion":
        latency, compares = insertion_cost(nn, k, comparators)
        if producer_cycles is None:
            exposed = latency.copy()
        else:
            exposed = np.maximum(latency - producer_cycles, k)
    else:  # threshold
        stream = _ceil_div(nn, comparators)
        if mask_scheme == "static-threshold":  # theta is known: nothing to select
            sel_latency, sel_compares = np.zeros(s, np.int64), np.zeros(s, np.int64)
            n_s = 0
        else:
            n_s = len(range(0, n, maskfn.subsample_stride(eps)))
            sel_latency, sel_compares = bitonic_cost(np.full(s, n_s, np.int64), comparators)
        latency = sel_latency + stream
        exposed = sel_latency  # the compares against theta stream with the next broadcast
        compares = sel_compares + nn
        extra.update(eps=eps, subsample=n_s)
    return TopkResult(
        scheme=scheme,
        latency=latency.astype(np.int64),
        exposed=exposed.astype(np.int64),
        compares=compares.astype(np.int64),
        mismatches=mismatches,
        kept=kept,
        barrier=BARRIER[scheme],
        exact=EXACT[scheme],
        theta=theta,
        extra=extra,
    )


def _unit_mask(premask, act_mask, params, mask_scheme, machine, key_bits, radix_bits, k, eps,
               with_theta, where):
    """(mismatches, kept, theta) per sample: the mask the unit's machine computes vs the trace's."""
    s, n = premask.num_samples, premask.size
    mismatches = np.zeros(s, np.int64)
    kept = np.zeros(s, np.int64)
    theta = np.zeros(s, np.float32) if with_theta else None
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for lo in range(0, s, chunk):
        hi = min(s, lo + chunk)
        absa = np.abs(_dense_rows(premask, lo, hi))
        if not np.isfinite(absa).all():
            raise AccelsimError(f"{where}: pre-mask activations contain NaN or Inf")
        want = _dense_rows(act_mask, lo, hi) != 0
        if mask_scheme == "topk":
            got = select_topk(absa, k[lo:hi], machine, key_bits, radix_bits)
        else:
            if mask_scheme == "threshold-prediction":
                sub = np.ascontiguousarray(absa[:, :: maskfn.subsample_stride(eps)])
                k_s = maskfn.kept_count(sub.shape[1], params.winner_rate)
                th = select_threshold(sub, k_s, machine, key_bits, radix_bits)
            else:
                th = np.full(hi - lo, np.float32(params.threshold), dtype=np.float32)
            got = absa > th[:, None]
            if theta is not None:
                theta[lo:hi] = th
        mismatches[lo:hi] = np.count_nonzero(got != want, axis=1)
        kept[lo:hi] = np.count_nonzero(got, axis=1)
    return mismatches, kept, theta


def _check_config(scheme, comparators, value_bits, radix_bits) -> None:
    if scheme not in SCHEMES:
        raise AccelsimError(f"topk.scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")
    options = (("comparators", comparators), ("value_bits", value_bits), ("radix_bits", radix_bits))
    for name, v in options:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise AccelsimError(f"topk.{name} must be an integer >= 1, got {v!r}")
    if radix_bits > min(value_bits, 24):
        raise AccelsimError(
            f"topk.radix_bits must be <= value_bits ({value_bits}) and <= 24, got {radix_bits}"
        )


def _mask_inputs(layer: LayerRecord) -> tuple[SparseBatch, SparseBatch, MaskParams]:
    where = f"layer {layer.name!r}"
    if layer.premask is None or layer.act_mask is None or layer.mask_params is None:
        raise AccelsimError(f"{where}: no dynamic activation mask in the trace (premask, act_mask "
                            f"and mask parameters are needed for the top-k unit)")
    premask, act_mask, params = layer.premask, layer.act_mask, layer.mask_params
    if params.scheme not in TRACE_SCHEMES:
        raise AccelsimError(f"{where}: unknown mask scheme {params.scheme!r} (expected one of "
                            f"{', '.join(TRACE_SCHEMES)})")
    if params.scheme == "static-threshold" and params.threshold is None:
        raise AccelsimError(f"{where}: static-threshold mask without a threshold")
    if tuple(premask.shape) != tuple(act_mask.shape) or premask.num_samples != act_mask.num_samples:
        raise AccelsimError(f"{where}: premask {premask.num_samples}x{premask.shape} and act_mask "
                            f"{act_mask.num_samples}x{act_mask.shape} differ in shape")
    if premask.size < 1:
        raise AccelsimError(f"{where}: empty activation tensor")
    return premask, act_mask, params


def _dense_rows(batch: SparseBatch, lo: int, hi: int) -> np.ndarray:
    """(hi-lo, n) float32 of samples lo..hi-1 (1.0 at listed positions for a position set)."""
    return batch.rows(lo, hi).to_dense().reshape(hi - lo, -1)


# ----------------------------------------------------------------------------- references


def bitonic_network_reference(values: np.ndarray, comparators: int) -> dict:
    """Run a bitonic sorting network on one sample's |values|, step by step.

    Sorts descending by (|a|, then lower index first), padding to a power of two with entries that
    sort last. Each stage's compare-exchanges go P per cycle; a stage waits for the previous one.
    Returns order (the n real indices, winners first), stages, compares, cycles.
    """
    absa = np.abs(np.asarray(values, dtype=np.float32))
    n = absa.shape[0]
    size = 1
    while size < n:
        size *= 2
    keys = [(float(absa[i]), -i) if i < n else (-1.0, -i) for i in range(size)]  # larger = earlier
    stages = compares = cycles = 0
    block = 2
    while block <= size:
        step = block // 2
        while step >= 1:
            pairs = [(i, i ^ step) for i in range(size) if (i ^ step) > i]
            stages += 1
            for start in range(0, len(pairs), comparators):  # one cycle: up to P compare-exchanges
                cycles += 1
                for i, j in pairs[start : start + comparators]:
                    compares += 1
                    descending = (i & block) == 0
                    if (keys[i] < keys[j]) == descending:
                        keys[i], keys[j] = keys[j], keys[i]
            step //= 2
        block *= 2
    order = np.array([-key[1] for key in keys if -key[1] < n], dtype=np.int64)
    return {"order": order, "stages": stages, "compares": compares, "cycles": cycles}


def insertion_unit_reference(values: np.ndarray, k: int, comparators: int) -> dict:
    """Cycle-by-cycle k-cell shift-register insertion sorter on one sample's |values|.

    Elements arrive in flat-index order, P per cycle; each newcomer is compared with every
    occupied cell at once (empty cells are gated) and inserted behind all cells holding a value
    >= its own (so the earlier element wins a tie); the last cell falls off when full. After the
    input, k cycles shift the winners out. Returns kept (indices), compares, cycles.
    """
    absa = np.abs(np.asarray(values, dtype=np.float32))
    n = absa.shape[0]
    cells: list[tuple[float, int]] = []  # sorted, largest first
    compares = cycles = 0
    pos = 0
    while pos < n:
        cycles += 1
        for _ in range(min(comparators, n - pos)):
            v = float(absa[pos])
            compares += len(cells)
            ge = [v <= cv for cv, _ in cells]  # every occupied cell compares in parallel
            slot = sum(ge)  # cells are sorted, so the >= cells form a prefix
            if slot < k:
                cells.insert(slot, (v, pos))
                del cells[k:]
            pos += 1
    for _ in range(k):  # drain: one winner leaves per cycle
        cycles += 1
    return {"kept": np.array(sorted(i for _, i in cells), dtype=np.int64), "compares": compares,
            "cycles": cycles}


def radix_select_reference(values: np.ndarray, k: int, comparators: int, key_bits: int,
                           radix_bits: int) -> dict:
    """Radix select of the k largest |values| on key_bits-bit keys, pass by pass, cycle by cycle.

    Each of ceil(key_bits / radix_bits) passes streams all n values, P per cycle, through the
    digit counters (an element whose higher digits left it out of the candidates still streams
    and counts as an update, gated), then scans the 2^r buckets from the top, one per cycle.
    Candidates left after the last pass share their key; the lowest indices win.
    Returns kept (sorted indices), updates, cycles.
    """
    absa = np.abs(np.asarray(values, dtype=np.float32))
    keys = [int(b) >> (32 - key_bits) for b in absa.view(np.uint32)]
    n = len(keys)
    candidates = list(range(n))
    kept: list[int] = []
    remaining = k
    updates = cycles = 0
    done_bits = 0
    while done_bits < key_bits:
        width = min(radix_bits, key_bits - done_bits)
        done_bits += width
        shift = key_bits - done_bits
        buckets: dict[int, list[int]] = {}
        for start in range(0, n, comparators):  # one cycle: up to P values into the counters
            cycles += 1
            for i in range(start, min(start + comparators, n)):
                updates += 1
                if i in candidates:
                    buckets.setdefault((keys[i] >> shift) & ((1 << width) - 1), []).append(i)
        chosen = None
        for digit in range((1 << radix_bits) - 1, -1, -1):  # one bucket per cycle, top first
            cycles += 1
            members = buckets.get(digit, [])
            if chosen is None and remaining > 0:
                if len(members) >= remaining:
                    chosen = digit
                else:
                    kept += members
                    remaining -= len(members)
        candidates = buckets.get(chosen, []) if chosen is not None else []
    kept += sorted(candidates)[:remaining]
    return {"kept": np.array(sorted(kept), dtype=np.int64), "updates": updates, "cycles": cycles}
