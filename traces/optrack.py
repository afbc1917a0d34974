"""See every op of a forward pass: what the recorder does not record as a layer is listed with its
operation count, a compute op it cannot represent is an error, and a dynamic mask is followed
through the ops between it and the layer that consumes it.

How: the model runs under a `torch.overrides.TorchFunctionMode`, which is handed every torch
function and tensor method the model calls (`F.relu`, `torch.add`, `x + y`, `x.view`, the
functional calls inside nn.BatchNorm2d or nn.MaxPool2d), in eager mode with the real tensors.
Forward hooks on every module keep a stack of the modules running, which names each op. torch.fx
was the other candidate; it needs a symbolically traceable model (no branches on tensor values,
no Python-side shape logic on proxies), which many research models are not, and it would
re-implement the modules the recorder's hooks already see run. The mode is eager and sees what
actually ran, so it cannot disagree with the recorded layers.

Per-sample data is told from weights by taint: the model's input is tainted, and so is
whatever an op computes from a tainted tensor. Ops on weights alone (a weight normalisation
computed in forward) are weight preprocessing a deployed accelerator does once, not per
inference, and are not listed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from accelsim.errors import AccelsimError
from accelsim.traces import opcount

# Compute modules the trace cannot represent: counted by module (MACs from their shapes).
UNREPRESENTABLE_MODULES = (nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase, nn.Embedding,
                           nn.EmbeddingBag)


@dataclass
class OpRecord:
    """One op the trace lists without simulating it (one call of a module or function)."""

    name: str  # qualified module name, or `module.function` for a functional call
    op: str  # the module class ("BatchNorm2d") or the function ("add")
    category: str  # normalisation, activation, pooling, elementwise, ..., compute
    out_shape: tuple  # per sample
    ops: int  # operations per sample (a MAC counts 2)
    macs: int  # multiply-accumulates per sample (unrepresentable compute only)
    after_layers: int  # how many recorded compute layers ran before it

    def to_json(self) -> dict:
        return {"name": self.name, "op": self.op, "category": self.category,
                "out_shape": [int(d) for d in self.out_shape], "ops": int(self.ops),
                "macs": int(self.macs), "after_layers": int(self.after_layers)}


@dataclass
class Carry:
    """A dynamic mask on its way to a layer: the ops it went through (docs/trace-format.md 3.3)."""

    module: nn.Module
    params: object  # MaskParams
    shape: tuple  # per-sample shape of the mask's own tensor
    carried: tuple = ()  # op descriptors (dicts), mask first


@dataclass
class _Frame:
    name: str
    module: nn.Module
    opaque: bool  # its inner calls are the module's own business (recorded layer, mask)
    leaf: bool  # one row for the whole call
    ops: int = 0
    macs: int = 0
    categories: list = field(default_factory=list)
    counted: bool = False
    tainted: bool = False  # some input carries per-sample data


class _Info:
    __slots__ = ("ref", "tainted", "carry")

    def __init__(self, ref, tainted, carry):
        self.ref, self.tainted, self.carry = ref, tainted, carry


def _tensors(obj) -> list[torch.Tensor]:
    return opcount._tensors(obj)


class _Mode(TorchFunctionMode):
    def __init__(self, tracker: "OpTracker"):
        super().__init__()
        self.tracker = tracker

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.tracker.stack:
            self.tracker.call(func, args, kwargs, out)
        return out


class OpTracker:
    """Driven by TraceRecorder: `start()` / `stop()` around the recording, `begin_batch(x)` and
    `end_batch()` around each forward pass."""

    def __init__(self, model: nn.Module, opaque: dict, allow_unsimulated: bool = False):
        self.model = model
        self.opaque = opaque  # id(module) -> why its inner calls are not listed
        self.unrepresentable = None  # (layer module, args) -> reason it cannot be recorded, or None
        self.skipped: set[int] = set()  # ids of layers counted as unsimulated instead
        self.allow = allow_unsimulated
        self.names = {id(m): n for n, m in model.named_modules()}
        self.stack: list[_Frame] = []
        self.info: dict[int, _Info] = {}
        self.rows: list[OpRecord] | None = None  # from the first batch
        self._batch_rows: list[OpRecord] = []
        self._seen: dict[str, int] = {}
        self.layers_run = 0
        self.batch = 1
        self.stopped: dict[int, str] = {}  # id(mask module) -> where its zeros stopped
        self._mode = _Mode(self)
        self._handles: list = []

    # -- set-up

    def start(self) -> None:
        for name, mod in self.model.named_modules():
            self._handles.append(mod.register_forward_pre_hook(self._push(name)))
            self._handles.append(mod.register_forward_hook(self._pop))
        self._mode.__enter__()

    def stop(self) -> None:
        self._mode.__exit__(None, None, None)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.info.clear()

    # -- tensor facts

    def _get(self, t: torch.Tensor) -> _Info | None:
        e = self.info.get(id(t))
        return e if e is not None and e.ref() is t else None

    def _set(self, t: torch.Tensor, tainted: bool, carry: Carry | None) -> None:
        key = id(t)
        info = self.info

        def drop(ref, key=key):
            e = info.get(key)
            if e is not None and e.ref is ref:
                del info[key]

        self.info[key] = _Info(weakref.ref(t, drop), tainted, carry)

    def tainted(self, t) -> bool:
        e = self._get(t) if isinstance(t, torch.Tensor) else None
        return e is not None and e.tainted

    def carry_of(self, t: torch.Tensor) -> Carry | None:
        e = self._get(t)
        return None if e is None else e.carry

    def set_mask(self, t: torch.Tensor, module: nn.Module, params) -> None:
        """The output of a dynamic mask module: the mask starts here."""
        self._set(t, True, Carry(module, params, tuple(int(d) for d in t.shape[1:])))

    # -- batches

    def begin_batch(self, x: torch.Tensor) -> None:
        self.batch = max(1, int(x.shape[0]))
        self._batch_rows = []
        self._seen = {}
        self.layers_run = 0
        self._set(x, True, None)

    def end_batch(self) -> None:
        if self.rows is None:
            self.rows = self._batch_rows
        elif [r.name for r in self._batch_rows] != [r.name for r in self.rows]:
            raise AccelsimError("the model ran different non-compute ops than in the first batch; "
                                "traces need a fixed op sequence")

    # -- module stack

    def _push(self, name: str):
        def hook(module, args):
            why = self.opaque.get(id(module))
            counting = self._counting()
            if why == "layer" and self.unrepresentable is not None and counting:
                reason = self.unrepresentable(module, args)
                if reason is not None:
                    if not self.allow:
                        self._refuse(name, type(module).__name__, reason)
                    self.skipped.add(id(module))
                    why = None  # counted like any module, from the F.linear / F.conv2d it calls
            if why == "layer":
                self.layers_run += 1
            if isinstance(module, UNREPRESENTABLE_MODULES) and counting:
                if not self.allow:
                    self._refuse(name, type(module).__name__)
                why = "unrepresentable"
            children = [c for c in module.children() if not getattr(c, "accelsim_mask", False)]
            tainted = any(self.tainted(t) for t in _tensors(args))
            self.stack.append(_Frame(name, module, opaque=why is not None,
                                     leaf=not children or why == "unrepresentable",
                                     tainted=tainted))
        return hook

    def _pop(self, module, args, output) -> None:
        frame = self.stack.pop()
        outs = _tensors(output)
        if frame.opaque or frame.leaf:
            for t in outs:
                if self._get(t) is None:
                    self._set(t, frame.tainted or frame.opaque, None)
        if isinstance(module, UNREPRESENTABLE_MODULES) and frame.opaque and self._counting():
            frame.macs = max(0, opcount.macs_of_module(module, args, output))
            frame.categories.append("compute")
            frame.counted = True
        if isinstance(module, nn.Identity):
            return  # computes and moves nothing (what a folded BatchNorm leaves behind)
        if frame.leaf and self._counting() and (frame.counted or (frame.tainted and not frame.opaque)):
            self._add_row(frame.name or type(module).__name__, type(module).__name__,
                          frame.categories, frame.ops + 2 * frame.macs, frame.macs, outs)

    def _counting(self) -> bool:
        """Whether an op called now is listed (inside the model, outside recorded layers)."""
        return bool(self.stack) and not any(f.opaque for f in self.stack)

    def _refuse(self, where: str, what: str, reason: str | None = None) -> None:
        who = f"module {where!r} ({what})" if where else f"the model's forward ({what})"
        raise AccelsimError(
            f"{who}: {reason or 'a compute op the trace cannot represent'} (traces hold "
            "nn.Conv2d and nn.Linear layers); record with --allow-unsimulated to list it as "
            "unsimulated with its MAC count")

    # -- function calls

    def call(self, func, args, kwargs, out) -> None:
        outs = _tensors(out)
        if not outs:
            return  # sizes, shapes, booleans: nothing computed on the data
        ins = _tensors(list(args) + list(kwargs.values()))
        tainted = any(self.tainted(t) for t in ins)
        name = opcount.op_name(func)
        carry = self._carried(name, args, kwargs, ins) if self._counting() else None
        for t in outs:
            self._set(t, tainted, carry)
        if not tainted or not self._counting():
            return
        frame = self.stack[-1]
        category = opcount.category_of(name)
        if category == "compute":
            if not self.allow:
                self._refuse(frame.name, type(frame.module).__name__,
                             None if frame.leaf else f"it calls {name}, a compute op the trace "
                             "cannot represent outside an nn.Conv2d / nn.Linear")
            macs, ops = opcount.macs(name, args, kwargs, out), 0
        else:
            macs, ops = 0, opcount.element_ops(name, args, kwargs, out)
        if frame.leaf:
            frame.ops += ops
            frame.macs += macs
            if category != "data movement":
                frame.categories.append(category)
            frame.counted = True
        elif category != "data movement":
            base = f"{frame.name}.{name}" if frame.name else name
            self._add_row(base, name, [category], ops + 2 * macs, macs, outs)

    def _carried(self, name: str, args, kwargs, ins) -> Carry | None:
        """The mask an op's output still carries, or None (and where the mask stopped)."""
        carries = [(t, c) for t in ins if (c := self.carry_of(t)) is not None]
        if not carries:
            return None
        first = args[0] if args else None
        if len(ins) == 1 and isinstance(first, torch.Tensor) and carries[0][0] is first:
            carry = carries[0][1]
            if name in opcount.CARRY_VIEWS:
                return carry
            step = _carry_step(name, args, kwargs)
            if step is not None:
                return Carry(carry.module, carry.params, carry.shape, carry.carried + (step,))
        for _, c in carries:
            frame = self.stack[-1] if self.stack else None
            where = (frame.name if frame is not None else "") or "the model"
            self.stopped.setdefault(id(c.module), f"{name} in {where!r}")
        return None

    # -- rows

    def _add_row(self, base: str, op: str, categories, ops: int, macs: int, outs) -> None:
        count = self._seen.get(base, 0) + 1
        self._seen[base] = count
        name = base if count == 1 else f"{base}#{count}"
        shape = tuple(int(d) for d in outs[0].shape[1:]) if outs else ()
        category = "compute" if macs or "compute" in categories else next(
            (c for c in categories if c != "data movement"), "data movement")
        self._batch_rows.append(OpRecord(
            name=name, op=op, category=category, out_shape=shape,
            ops=-(-int(ops) // self.batch) if ops else 0,
            macs=-(-int(macs) // self.batch) if macs else 0, after_layers=self.layers_run))


def _carry_step(name: str, args, kwargs) -> dict | None:
    """The descriptor of a zero-keeping op a mask goes through, or None."""
    if name == "relu":
        return {"op": "relu"}
    if name == "leaky_relu":
        slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)
        return {"op": "leaky_relu", "negative_slope": float(slope)}
    if name == "max_pool2d":
        x = args[0]
        if x.dim() != 4:
            return None
        get = lambda i, k, d: opcount._arg(args, kwargs, i, k, d)  # noqa: E731
        kernel = opcount._pair(get(1, "kernel_size", None), 2)
        stride = get(2, "stride", None)
        stride = kernel if stride is None or stride == [] or stride == () else opcount._pair(stride, 2)
        return {"op": "max_pool2d", "in_shape": [int(d) for d in x.shape[1:]],
                "kernel": list(kernel), "stride": list(stride),
                "padding": list(opcount._pair(get(3, "padding", 0), 2)),
                "dilation": list(opcount._pair(get(4, "dilation", 1), 2)),
                "ceil_mode": bool(get(5, "ceil_mode", False))}
    return None
