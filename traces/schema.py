"""In-memory form of a trace: what the reader returns, the writer takes and the simulator uses.

numpy only (no torch): the simulator imports this. See docs/trace-format.md for the file format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# conv2d and linear: a weight times one activation vector (or map) per sample. token_linear: a
# Linear applied to each token of a (T, F) input (transformers). matmul: an activation x
# activation product (attention scores Q K^T and context A V): per sample, heads H, inputs
# (H, T, K) times a per-sample operand (H, K, N); no weight.
LAYER_KINDS = ("conv2d", "linear", "token_linear", "matmul")


@dataclass(frozen=True)
class SparseBatch:
    """Per-sample sparse tensors in CSR-over-samples form.

    Sample s holds the non-zeros indices[indptr[s]:indptr[s+1]] (flat, row-major indices into
    `shape`, strictly increasing) with `values` at the same positions. `values` may be None for
    a pure position set (an activation mask: the listed positions are the winners).
    """

    shape: tuple[int, ...]  # per-sample dense shape, e.g. (C, H, W) or (F,)
    indptr: np.ndarray  # (S + 1,) int64
    indices: np.ndarray  # (nnz,) uint32 or int64
    values: np.ndarray | None  # (nnz,) float32, or None for a position set

    @property
    def num_samples(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def size(self) -> int:
        """Dense number of elements per sample."""
        return int(np.prod(self.shape, dtype=np.int64))

    def nnz_per_sample(self) -> np.ndarray:
        return np.diff(self.indptr)

    def density_per_sample(self) -> np.ndarray:
        return self.nnz_per_sample() / max(self.size, 1)

    def sample(self, s: int) -> tuple[np.ndarray, np.ndarray | None]:
        lo, hi = int(self.indptr[s]), int(self.indptr[s + 1])
        vals = None if self.values is None else self.values[lo:hi]
        return self.indices[lo:hi], vals

    def rows(self, lo: int, hi: int) -> "SparseBatch":
        """Samples lo..hi-1 as a batch of their own (views of the arrays, indptr rebased)."""
        a, b = int(self.indptr[lo]), int(self.indptr[hi])
        values = None if self.values is None else self.values[a:b]
        return SparseBatch(self.shape, self.indptr[lo : hi + 1] - a, self.indices[a:b], values)

    def to_dense(self) -> np.ndarray:
        """(S, *shape) float32; for a position set, 1.0 at every listed position."""
        out = np.zeros((self.num_samples, self.size), dtype=np.float32)
        rows = np.repeat(np.arange(self.num_samples), self.nnz_per_sample())
        vals = np.float32(1.0) if self.values is None else self.values
        out[rows, self.indices.astype(np.int64)] = vals
        return out.reshape((self.num_samples, *self.shape))

    @classmethod
    def from_dense(cls, dense: np.ndarray, keep_zeros_mask: np.ndarray | None = None) -> "SparseBatch":
        """Encode (S, *shape) values. Positions kept: non-zeros, or where keep_zeros_mask is true
        (a mask given as a boolean array records a position set with the values there)."""
        dense = np.asarray(dense)
        s = dense.shape[0]
        flat = dense.reshape(s, -1)
        keep = flat != 0 if keep_zeros_mask is None else np.asarray(keep_zeros_mask).reshape(s, -1)
        rows, cols = np.nonzero(keep)
        indptr = np.zeros(s + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=s), out=indptr[1:])
        index_dtype = np.uint32 if flat.shape[1] <= np.iinfo(np.uint32).max else np.int64
        return cls(
            shape=tuple(int(d) for d in dense.shape[1:]),
            indptr=indptr,
            indices=cols.astype(index_dtype),
            values=flat[rows, cols].astype(np.float32),
        )

    @classmethod
    def positions_from_bool(cls, mask: np.ndarray) -> "SparseBatch":
        """A position set (values None) from an (S, *shape) boolean array."""
        enc = cls.from_dense(mask.astype(np.float32))
        return cls(shape=enc.shape, indptr=enc.indptr, indices=enc.indices, values=None)


@dataclass(frozen=True)
class MaskParams:
    """How a dynamic activation mask chose the winners of a layer's input.

    scheme: "topk" (exact per-sample top-k by magnitude), "threshold-prediction" (JPnet Eq. 11:
    threshold from an eps-subsample), or "static-threshold" (one theta for every input).
    """

    scheme: str
    winner_rate: float | None = None
    threshold: float | None = None
    eps: float | None = None
    # Where the mask sits apart from the layer's input (docs/trace-format.md, section 3.3):
    # the per-sample shape of the mask's own tensor (None: the layer's in_shape) and the
    # zero-keeping ops (relu, max_pool2d, ...) between the mask and the layer, as JSON objects.
    shape: tuple[int, ...] | None = None
    carried: tuple = ()

    def unit_key(self) -> tuple:
        """What the top-k unit computes from: two consumers with equal keys share one mask."""
        return (self.scheme, self.winner_rate, self.threshold, self.eps, self.shape)


@dataclass(frozen=True)
class LayerGeometry:
    """Shape of one compute layer. Linear, token_linear and matmul layers use kernel (1, 1),
    stride 1, padding 0, dilation 1, groups 1. token_linear: in (T, F), out (T, M), weight
    (M, F). matmul: in (H, T, K), out (H, T, N), per-sample operand (H, K, N), no weight."""

    name: str
    kind: str  # "conv2d" | "linear"
    in_shape: tuple[int, ...]  # per sample: (C, H, W) or (F,)
    out_shape: tuple[int, ...]  # per sample: (M, OH, OW) or (M,)
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    has_bias: bool = False

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """The weight's shape; () for a matmul (its second operand is an activation)."""
        if self.kind == "linear":
            return (self.out_shape[0], self.in_shape[0])
        if self.kind == "token_linear":
            return (self.out_shape[-1], self.in_shape[-1])
        if self.kind == "matmul":
            return ()
        return (self.out_shape[0], self.in_shape[0] // self.groups, *self.kernel)

    @property
    def operand_shape(self) -> tuple[int, ...]:
        """matmul: the per-sample second operand (H, K, N); () for the other kinds."""
        if self.kind != "matmul":
            return ()
        return (self.in_shape[0], self.in_shape[2], self.out_shape[2])

    @property
    def has_weight(self) -> bool:
        return self.kind != "matmul"

    @property
    def dense_macs(self) -> int:
        """MACs per sample of the dense layer (every weight times every input it touches)."""
        m = self.out_shape[0]
        if self.kind == "linear":
            return m * self.in_shape[0]
        if self.kind in ("token_linear", "matmul"):  # out elements x reduction length
            return int(np.prod(self.out_shape, dtype=np.int64)) * self.in_shape[-1]
        _, oh, ow = self.out_shape
        c_per_group = self.in_shape[0] // self.groups
        return m * oh * ow * c_per_group * self.kernel[0] * self.kernel[1]


@dataclass
class LayerRecord:
    """Everything a trace holds about one compute layer, over S samples."""

    geometry: LayerGeometry
    weight: np.ndarray | None  # float32, geometry.weight_shape, zeros where masked; None: matmul
    weight_mask: np.ndarray | None  # bool, same shape; None = nothing masked
    bias: np.ndarray | None  # float32 (M,)
    inputs: SparseBatch  # activations as fed to the layer (after any dynamic mask)
    premask: SparseBatch | None = None  # activations before the dynamic mask, if one was applied
    act_mask: SparseBatch | None = None  # winners (position set), if a dynamic mask was applied
    mask_params: MaskParams | None = None
    outputs: np.ndarray | None = None  # float32 (S_out, *out_shape), before the non-linearity;
    # S_out <= S: outputs are kept for the first S_out samples (see docs/trace-format.md)
    operand: SparseBatch | None = None  # matmul only: the second operand (H, K, N) per sample
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.geometry.name

    @property
    def weights_deferred(self) -> bool:
        """True while the weights are still on disk (a reader's deferred load, see
        Deferred): reading `weight` or `weight_mask` loads and checks them."""
        return isinstance(self.__dict__.get("_weight"), Deferred)

    @property
    def outputs_deferred(self) -> bool:
        """True while the recorded outputs are still on disk: reading `outputs` loads them."""
        return isinstance(self.__dict__.get("_outputs"), Deferred)


class Deferred:
    """Stands for data of a layer until first use: load() returns it, read and validated. A
    reader passes one as `weight` (load() gives (weight, weight_mask)) or as `outputs` to
    defer reading what the simulator may never need: the weight-side encodings and the
    functional check's verdict can come from the cache."""

    def __init__(self, load):
        self.load = load


def _get_weight(self):
    value = self.__dict__["_weight"]
    if isinstance(value, Deferred):
        weight, mask = value.load()
        self.__dict__["_weight"], self.__dict__["_weight_mask"] = weight, mask
        return weight
    return value


def _set_weight(self, value):
    self.__dict__["_weight"] = value


def _get_mask(self):
    if isinstance(self.__dict__.get("_weight"), Deferred):
        _get_weight(self)
    return self.__dict__["_weight_mask"]


def _set_mask(self, value):
    if isinstance(self.__dict__.get("_weight"), Deferred) and value is None:
        return  # set by the load
    self.__dict__["_weight_mask"] = value


def _get_outputs(self):
    value = self.__dict__.get("_outputs")
    if isinstance(value, Deferred):
        value = self.__dict__["_outputs"] = value.load()
    return value


def _set_outputs(self, value):
    self.__dict__["_outputs"] = value


# Properties over the dataclass fields: the generated __init__, replace() and repr go through
# them, so a record built with Deferred data behaves like any other once touched.
LayerRecord.weight = property(_get_weight, _set_weight)
LayerRecord.weight_mask = property(_get_mask, _set_mask)
LayerRecord.outputs = property(_get_outputs, _set_outputs)
