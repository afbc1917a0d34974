"""How many operations each op of a forward pass costs (torch side; docs/trace-format.md,
section 2.2, is the table this module implements).

One unit everywhere: an arithmetic operation on one element. A multiply-accumulate is two (a
multiply and an add), so compute layers and element-wise ops add up to one figure of which the
simulated layers are a share. Counts are over a whole call (all samples); the recorder divides
by the batch size.
"""

from __future__ import annotations

import math
import re

import torch

# Ops that move or re-view data and compute nothing (0 operations). Eval-mode dropout is the
# identity. Listed only when a module (nn.Flatten, nn.Dropout, ...) runs them, so a model's
# Flatten shows up; a functional x.view(...) in a forward is not a row of its own.
DATA_MOVEMENT = frozenset("""
view view_as reshape reshape_as flatten unflatten permute transpose t contiguous squeeze
unsqueeze expand expand_as repeat tile getitem chunk split split_with_sizes unbind cat concat
concatenate stack hstack vstack clone detach to float half double bfloat16 type type_as cpu
narrow select index_select gather movedim moveaxis swapaxes roll flip pad constant_pad_nd
dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout identity zeros_like
ones_like empty_like full_like new_zeros new_ones new_empty new_full masked_select
""".split())

# Shape-preserving ops that keep a zero a zero (f(0) = 0 exactly), element by element: a
# dynamic mask may be carried through them to the layer that consumes it (plus max-pool and the
# order-preserving views below). Section 3.3 of docs/trace-format.md.
CARRY_ELEMENTWISE = ("relu", "leaky_relu")
CARRY_VIEWS = frozenset("view reshape flatten unflatten contiguous squeeze unsqueeze clone detach "
                        "to float dropout dropout1d dropout2d dropout3d alpha_dropout "
                        "feature_alpha_dropout identity".split())

CATEGORY = {
    "batch_norm": "normalisation", "layer_norm": "normalisation", "group_norm": "normalisation",
    "instance_norm": "normalisation", "local_response_norm": "normalisation",
    "rms_norm": "normalisation",
    "softmax": "softmax", "log_softmax": "softmax",
}
ACTIVATIONS = frozenset("""
relu relu6 leaky_relu elu selu celu gelu silu mish sigmoid tanh hardtanh hardsigmoid hardswish
softplus softsign tanhshrink threshold prelu rrelu glu logsigmoid hardshrink softshrink
""".split())
REDUCTIONS = frozenset("sum mean amax amin prod std var norm logsumexp max min".split())

# Compute ops the trace cannot represent (outside the recorded nn.Conv2d / nn.Linear): an error
# unless the recording allows unsimulated compute; their MACs count twice in the operations.
COMPUTE = frozenset("""
conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d linear bilinear matmul
mm bmm einsum addmm baddbmm addbmm addmv mv dot inner tensordot scaled_dot_product_attention
multi_head_attention_forward embedding embedding_bag lstm gru rnn_tanh rnn_relu lstm_cell
gru_cell rnn_tanh_cell rnn_relu_cell
""".split())


def op_name(func) -> str:
    """Normalised name of a torch function or tensor method: `Tensor.__iadd__` -> "add",
    `relu_` -> "relu", `F.max_pool2d_with_indices` -> "max_pool2d"."""
    name = getattr(func, "__name__", None) or str(func)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name[:1] in ("i", "r") and name[1:] in ("add", "sub", "mul", "truediv", "floordiv",
                                                   "matmul", "pow", "and", "or", "xor", "mod"):
            name = name[1:]
    name = name.rstrip("_")
    name = {"truediv": "div", "floordiv": "floor_divide", "concat": "cat", "absolute": "abs",
            "_max_pool2d": "max_pool2d"}.get(name, name)
    return re.sub(r"_with_indices$", "", name)


def category_of(name: str) -> str:
    if name in COMPUTE:
        return "compute"
    if name in DATA_MOVEMENT:
        return "data movement"
    if name in CATEGORY:
        return CATEGORY[name]
    if "pool" in name:
        return "pooling"
    if name in ACTIVATIONS:
        return "activation"
    if name in REDUCTIONS:
        return "reduction"
    return "elementwise"


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _numel(obj) -> int:
    return sum(int(t.numel()) for t in _tensors(obj))


def _arg(args, kwargs, i: int, key: str, default=None):
    if key in kwargs:
        return kwargs[key]
    return args[i] if len(args) > i else default


def _pair(v, n: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        return tuple(int(x) for x in v) if len(v) == n else tuple(int(v[0]) for _ in range(n))
    return tuple(int(v) for _ in range(n))


def _adaptive_window_total(in_sizes, out_sizes) -> int:
    """Sum over output positions of PyTorch's adaptive window size (start = floor(i*I/O),
    end = ceil((i+1)*I/O)), per plane."""
    total = 1
    for size_in, size_out in zip(in_sizes, out_sizes):
        total *= sum(-(-((i + 1) * size_in) // size_out) - (i * size_in) // size_out
                     for i in range(size_out))
    return total


def _pool_ops(name: str, args, kwargs, out) -> int:
    x = args[0]
    y = _tensors(out)[0]
    dims = int(name[-2]) if name[-2].isdigit() else 2
    if name.startswith("adaptive"):
        planes = int(y.numel()) // max(1, math.prod(y.shape[-dims:]))
        windows = planes * _adaptive_window_total(x.shape[-dims:], y.shape[-dims:])
        return windows - int(y.numel()) if "max" in name else windows
    kernel = math.prod(_pair(_arg(args, kwargs, 1, "kernel_size"), dims))
    per_output = kernel - 1 if "max" in name else kernel
    return int(y.numel()) * per_output


def element_ops(name: str, args, kwargs, out) -> int:
    """Operations of one non-compute call (docs/trace-format.md, section 2.2)."""
    if name in DATA_MOVEMENT:
        return 0
    n_out = _numel(out)
    if name == "batch_norm":
        return 2 * n_out  # eval: one multiply and one add per element (constants folded)
    if name in ("layer_norm", "group_norm", "instance_norm", "rms_norm"):
        affine = _arg(args, kwargs, 2 if name in ("layer_norm", "group_norm", "rms_norm") else 3,
                      "weight") is not None
        return (5 + 2 * affine) * n_out
    if name == "local_response_norm":
        return (int(_arg(args, kwargs, 1, "size")) + 4) * n_out
    if name in ("softmax", "log_softmax"):
        return 5 * n_out  # max, subtract, exp, sum, divide (or log)
    if "pool" in name and name.endswith(("pool1d", "pool2d", "pool3d")):
        return _pool_ops(name, args, kwargs, out)
    if name in REDUCTIONS and len(_tensors(args[:1])) == 1 and _numel(out) < _numel(args[0]):
        return _numel(args[0])  # a reduction: one operation per input element
    return n_out  # everything else: one operation per output element


def macs(name: str, args, kwargs, out) -> int:
    """Multiply-accumulates of one compute call the trace cannot represent."""
    n_out = _numel(out)
    if name.startswith("conv_transpose"):
        x, w = args[0], args[1]
        return int(x.numel()) * math.prod(w.shape[1:])
    if name.startswith("conv"):
        return n_out * math.prod(args[1].shape[1:])
    if name == "linear":
        return n_out * int(args[1].shape[-1])
    if name == "bilinear":
        return n_out * int(args[2].shape[1]) * int(args[2].shape[2])
    if name in ("matmul", "mm", "bmm", "mv", "dot", "inner"):
        return n_out * int(args[0].shape[-1])
    if name in ("addmm", "baddbmm", "addbmm", "addmv"):
        return n_out * int(args[1].shape[-1])
    if name == "tensordot":  # |a| = free_a x K, |b| = K x free_b, |out| = free_a x free_b
        return n_out * math.isqrt(_numel(args[0]) * _numel(args[1]) // max(1, n_out))
    if name == "einsum":
        return _einsum_macs(args)
    if name == "scaled_dot_product_attention":
        q, k, v = args[0], args[1], args[2]
        batch = math.prod(q.shape[:-2])
        return batch * int(q.shape[-2]) * int(k.shape[-2]) * (int(q.shape[-1]) + int(v.shape[-1]))
    if name in ("embedding", "embedding_bag"):
        return 0  # a table lookup
    return 0  # recurrent and attention calls are counted by their module (macs_of_module)


def _einsum_macs(args) -> int:
    eq = str(args[0]).replace(" ", "")
    ops = args[1:] if not (len(args) == 2 and isinstance(args[1], (list, tuple))) else args[1]
    lhs = eq.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for spec, t in zip(lhs, ops):
        for letter, size in zip(spec.replace("...", ""), t.shape[-len(spec.replace("...", "")):]):
            sizes[letter] = int(size)
    return math.prod(sizes.values()) if len(lhs) > 1 else 0


def macs_of_module(module: torch.nn.Module, args, out) -> int:
    """MACs of one call of a compute module the trace cannot represent (section 2.2)."""
    from torch import nn

    if isinstance(module, nn.MultiheadAttention):
        q, k = args[0], args[1] if len(args) > 1 else args[0]
        batch_first = getattr(module, "batch_first", False)
        seq_q = int(q.shape[1] if batch_first and q.dim() == 3 else q.shape[0])
        seq_k = int(k.shape[1] if batch_first and k.dim() == 3 else k.shape[0])
        batch = int(q.numel()) // (seq_q * int(q.shape[-1]))
        e = module.embed_dim
        per = (seq_q * e * e + seq_k * e * (module.kdim + module.vdim) + 2 * seq_q * seq_k * e
               + seq_q * e * e)
        return batch * per
    if isinstance(module, nn.RNNBase):
        gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
        x = args[0]
        steps = int(x.numel()) // int(x.shape[-1])  # time steps x batch
        h, dirs = module.hidden_size, 2 if module.bidirectional else 1
        total = 0
        for layer in range(module.num_layers):
            width = module.input_size if layer == 0 else h * dirs
            total += dirs * gates * h * (width + h)
        return steps * total
    if isinstance(module, nn.RNNCellBase):
        gates = {nn.LSTMCell: 4, nn.GRUCell: 3}.get(type(module), 1)
        rows = int(args[0].numel()) // module.input_size
        return rows * gates * module.hidden_size * (module.input_size + module.hidden_size)
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return 0
    return -1  # counted from the functions it calls
