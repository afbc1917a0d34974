"""Record a trace from any torch nn.Module with forward hooks (the only torch module of traces).

Every nn.Conv2d and nn.Linear is captured, in execution order: its input as fed (sparse),
its output before any non-linearity (first S_out samples), its weight as used. A Linear on
(batch, tokens, features) is a token_linear layer; an activation product module
(`accelsim_product = True`, e.g. accelsim.models.vit.ActivationProduct: attention's Q K^T and
A V) is a matmul layer whose second argument is recorded as its per-sample operand. Every other op
that runs is listed with its operation count (accelsim.traces.optrack); a compute op the trace
cannot represent is an error unless allowed. Dynamic masks (modules with `accelsim_mask = True`,
see accelsim.models.masks) are followed through zero-keeping ops (views, ReLU, max-pool) to the
compute layer that reads them, so the pre-mask activations and the winners travel with that
layer; a mask that reaches no layer is an error. Batches are encoded to CSR as they come, so
dense activations of all samples are never held at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.traces.optrack import OpTracker
from accelsim.traces.schema import LayerRecord, MaskParams, SparseBatch
from accelsim.traces.unsimulated import KEY as UNSIMULATED_KEY
from accelsim.traces.writer import write_trace

try:  # the models helper's geometry function; a local copy keeps the recorder standalone
    from accelsim.models.counting import geometry_of
except ImportError:  # pragma: no cover - only while models/ is incomplete
    geometry_of = None


def _geometry(name: str, module: nn.Module, in_shape: tuple, out_shape: tuple):
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        raise AccelsimError(f"layer {name}: padding_mode={module.padding_mode!r} is not supported "
                            "(traces model zero padding only)")
    if geometry_of is None:
        raise AccelsimError("accelsim.models.counting is missing; cannot build layer geometry")
    return geometry_of(name, module, in_shape, out_shape)


def unrepresentable(module: nn.Module, args) -> str | None:
    """Why a Conv2d/Linear/activation-product call cannot be a trace layer (None: it can)."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor):
        return "its input is not a tensor"
    if isinstance(module, nn.Linear) and x.dim() < 2:
        return f"nn.Linear on a {tuple(x.shape)} input (traces need (batch, [tokens, ...] features))"
    if getattr(module, "accelsim_product", False) is True and not (
            len(args) == 2 and isinstance(args[1], torch.Tensor) and x.dim() == 4
            and args[1].dim() == 4):
        return "an activation product needs two (batch, heads, tokens, features) operands"
    if isinstance(module, nn.Conv2d):
        if x.dim() != 4:
            return f"nn.Conv2d on a {tuple(x.shape)} input (traces need (batch, C, H, W))"
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r} (traces model zero padding only)"
    return None


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def _mask_params(module: nn.Module) -> MaskParams | None:
    """MaskParams of a mask module, or None when it masks nothing (scheme 'off')."""
    p = module.mask_params()
    if isinstance(p, MaskParams):
        return None if p.scheme == "off" else p
    if p is None or p.get("scheme") == "off":
        return None
    return MaskParams(scheme=p["scheme"], winner_rate=p.get("winner_rate"),
                      threshold=p.get("threshold"), eps=p.get("eps"))


def is_compute(module: nn.Module) -> bool:
    """Whether the recorder records this module as a layer."""
    return isinstance(module, (nn.Conv2d, nn.Linear)) or getattr(module, "accelsim_product", False) is True


class _Chunks:
    """Per-batch CSR pieces of one field, concatenated at the end."""

    def __init__(self) -> None:
        self.counts: list[np.ndarray] = []
        self.indices: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def add(self, enc: SparseBatch) -> None:
        self.counts.append(np.diff(enc.indptr))
        self.indices.append(enc.indices)
        if enc.values is not None:
            self.values.append(enc.values)

    def batch(self, shape: tuple, with_values: bool) -> SparseBatch:
        indptr = np.zeros(sum(len(c) for c in self.counts) + 1, dtype=np.int64)
        np.cumsum(np.concatenate(self.counts), out=indptr[1:])
        return SparseBatch(shape=shape, indptr=indptr,
                           indices=np.concatenate(self.indices).astype(np.uint32),
                           values=np.concatenate(self.values) if with_values else None)


@dataclass
class _Layer:
    name: str
    module: nn.Module
    geometry: object = None
    weight: np.ndarray | None = None
    weight_mask: np.ndarray | None = None
    bias: np.ndarray | None = None
    mask_params: MaskParams | None = None
    masked: bool | None = None  # whether a dynamic mask fed this layer (fixed by batch 1)
    inputs: _Chunks = field(default_factory=_Chunks)
    premask: _Chunks = field(default_factory=_Chunks)
    act_mask: _Chunks = field(default_factory=_Chunks)
    operand: _Chunks = field(default_factory=_Chunks)  # matmul: the second argument
    outputs: list[np.ndarray] = field(default_factory=list)
    in_shape: tuple = ()


class TraceRecorder:
    """Context manager: hooks a model, records every batch run through it, writes a trace.

        with TraceRecorder(model, output_samples=100) as rec:
            for x in batches:
                model(x)
        rec.write("run.trace.safetensors", {"model": ..., "method": ..., "dataset": ...})

    Inside the block the model is in eval mode, gradients are off and mask modules keep their
    last pre-mask input and mask; all of it is restored on exit.
    """

    def __init__(self, model: nn.Module, output_samples: int | None = None,
                 allow_unsimulated: bool = False) -> None:
        if output_samples is not None and output_samples < 0:
            raise AccelsimError(f"output_samples must be >= 0, got {output_samples}")
        self.model = model
        self.output_samples = output_samples
        self.num_samples = 0
        self._layers: dict[str, _Layer] = {}
        self._order: list[str] = []  # execution order, fixed by the first batch
        self._batch_calls: list[str] = []
        self._handles: list = []
        self._restore: list = []
        self._mask_names: dict[int, str] = {}
        self._active_masks: dict[int, str] = {}  # id -> name of every mask that masked something
        self._consumed_masks: set[int] = set()  # ids of masks whose output a layer read
        self.allow_unsimulated = allow_unsimulated
        self.tracker: OpTracker | None = None

    # -- context management

    def __enter__(self) -> "TraceRecorder":
        compute = [(n, m) for n, m in self.model.named_modules() if is_compute(m)]
        if not compute:
            raise AccelsimError(f"{type(self.model).__name__} has no nn.Conv2d or nn.Linear layer to record")
        self._restore.append(lambda was=self.model.training: self.model.train(was))
        self.model.eval()
        grad = torch.no_grad()
        grad.__enter__()
        self._restore.append(lambda: grad.__exit__(None, None, None))
        h = self._handles
        h.append(self.model.register_forward_pre_hook(self._batch_start))
        h.append(self.model.register_forward_hook(self._batch_end))
        opaque = {id(m): "layer" for _, m in compute}
        opaque.update({id(m): "mask" for m in self.model.modules()
                       if getattr(m, "accelsim_mask", False) is True})
        self.tracker = OpTracker(self.model, opaque, self.allow_unsimulated)
        self.tracker.unrepresentable = unrepresentable
        self.tracker.start()  # its module hooks run before the ones below
        self._restore.append(self.tracker.stop)
        for name, mod in self.model.named_modules():
            if getattr(mod, "accelsim_mask", False) is True:
                self._mask_names[id(mod)] = name
                self._restore.append(lambda m=mod, k=getattr(mod, "keep_last", False): setattr(m, "keep_last", k))
                mod.keep_last = True
                h.append(mod.register_forward_hook(self._mask_hook))
        for name, mod in compute:
            self._layers[name] = _Layer(name, mod)
            h.append(mod.register_forward_pre_hook(self._pre_hook(name)))
            h.append(mod.register_forward_hook(self._post_hook(name)))
        return self

    def __exit__(self, *exc) -> bool:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()
        return False

    # -- hooks

    def _batch_start(self, module, args) -> None:
        self._batch_calls = []
        if args and isinstance(args[0], torch.Tensor):
            self.tracker.begin_batch(args[0])

    def _batch_end(self, module, args, output) -> None:
        first = not self._order
        if first:
            self._order = list(self._batch_calls)
        elif self._batch_calls != self._order:
            raise AccelsimError("the model ran its layers in a different order than in the first "
                                "batch; traces need a fixed layer sequence")
        if not self._order:
            raise AccelsimError("no nn.Conv2d or nn.Linear layer ran in the forward pass")
        self.tracker.end_batch()
        x = args[0] if args else None
        self.num_samples += int(x.shape[0]) if isinstance(x, torch.Tensor) else 0

    def _mask_hook(self, module, args, output) -> None:
        params = _mask_params(module)
        if params is None:
            return
        if module.last_premask is None or module.last_mask is None:
            raise AccelsimError(f"mask module {type(module).__name__} did not keep last_premask/last_mask")
        self._active_masks[id(module)] = self._mask_names.get(id(module), type(module).__name__)
        self.tracker.set_mask(output, module, params)

    def _pre_hook(self, name: str):
        def hook(module, args):
            if id(module) in self.tracker.skipped:
                return  # not representable: listed as unsimulated compute (allowed)
            if name in self._batch_calls:
                raise AccelsimError(f"layer {name} was called twice in one forward pass; a trace "
                                    "needs each Conv2d/Linear to run once per sample (use separate modules)")
            self._batch_calls.append(name)
            rec = self._layers[name]
            x = args[0]
            b = int(x.shape[0])
            rec.in_shape = tuple(int(d) for d in x.shape[1:])
            flat = _np(x).reshape(b, -1)
            rec.inputs.add(SparseBatch.from_dense(flat))
            carry = self.tracker.carry_of(x)
            if getattr(module, "accelsim_product", False) is True:
                rec.operand.add(SparseBatch.from_dense(_np(args[1]).reshape(b, -1)))
            if rec.masked is None:
                rec.masked = carry is not None
            elif rec.masked != (carry is not None):
                raise AccelsimError(f"layer {name}: a dynamic mask fed it in some batches but not in others")
            if carry is not None:
                mmod = carry.module
                self._consumed_masks.add(id(mmod))
                p = carry.params
                apart = bool(carry.carried)  # a view alone keeps the flat positions
                params = MaskParams(p.scheme, p.winner_rate, p.threshold, p.eps,
                                    shape=carry.shape if apart else None, carried=carry.carried)
                if rec.mask_params is None:
                    rec.mask_params = params
                elif rec.mask_params != params:
                    raise AccelsimError(f"layer {name}: its dynamic mask changed between batches")
                rec.premask.add(SparseBatch.from_dense(_np(mmod.last_premask).reshape(b, -1)))
                rec.act_mask.add(SparseBatch.positions_from_bool(
                    mmod.last_mask.detach().cpu().numpy().reshape(b, -1)))
        return hook

    def _post_hook(self, name: str):
        def hook(module, args, output):
            if id(module) in self.tracker.skipped:
                return
            rec = self._layers[name]
            b = int(output.shape[0])
            if rec.geometry is None:
                rec.geometry = _geometry(name, module, rec.in_shape, tuple(output.shape[1:]))
                self._capture_weights(rec, module)
            have = sum(len(o) for o in rec.outputs)
            want = b if self.output_samples is None else max(0, min(b, self.output_samples - have))
            if want:
                rec.outputs.append(_np(output[:want]))
        return hook

    @staticmethod
    def _capture_weights(rec: _Layer, module: nn.Module) -> None:
        if not rec.geometry.has_weight:
            return  # a matmul: both operands are activations
        w = _np(module.weight)
        mask = getattr(module, "weight_mask", None)
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy().astype(bool)
            if mask.shape != w.shape:
                raise AccelsimError(f"layer {rec.name}: weight_mask shape {mask.shape} does not "
                                    f"match the weight {w.shape}")
            w = np.where(mask, w, np.float32(0)).astype(np.float32)
            rec.weight_mask = mask
        rec.weight = w
        rec.bias = None if module.bias is None else _np(module.bias)

    # -- results

    def records(self) -> list[LayerRecord]:
        """One LayerRecord per executed compute layer, in execution order."""
        if not self._order:
            raise AccelsimError("nothing was recorded: run at least one batch through the model")
        lost = [(i, n) for i, n in self._active_masks.items() if i not in self._consumed_masks]
        if lost:
            i, name = lost[0]
            stop = self.tracker.stopped.get(i)
            where = (f"its zeros stop at {stop}, which does not keep a zero a zero" if stop else
                     "no Conv2d/Linear reads its output")
            raise AccelsimError(
                f"activation mask {name!r} reaches no Conv2d/Linear: {where} (a mask is carried "
                "through views, ReLU, leaky ReLU and max-pool only); place the mask in front of "
                "the layer that consumes it")
        out = []
        for name in self._order:
            if name not in self._layers or self._layers[name].geometry is None:
                continue
            r = self._layers[name]
            g = r.geometry
            outputs = np.concatenate(r.outputs).reshape(-1, *g.out_shape) if r.outputs else None
            mshape = g.in_shape if r.mask_params is None or r.mask_params.shape is None \
                else r.mask_params.shape
            out.append(LayerRecord(
                geometry=g, weight=r.weight, weight_mask=r.weight_mask, bias=r.bias,
                inputs=r.inputs.batch(g.in_shape, True),
                premask=r.premask.batch(mshape, True) if r.masked else None,
                act_mask=r.act_mask.batch(mshape, False) if r.masked else None,
                mask_params=r.mask_params if r.masked else None,
                outputs=outputs,
                operand=r.operand.batch(g.operand_shape, True) if g.kind == "matmul" else None))
        return out

    def unsimulated(self) -> list[dict]:
        """The ops that ran but are not trace layers, in execution order (section 2.2)."""
        return [r.to_json() for r in (self.tracker.rows or [])]

    def write(self, path, meta: dict) -> None:
        records = self.records()
        write_trace(path, {**meta, UNSIMULATED_KEY: self.unsimulated()}, records)


def _as_input(batch) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise AccelsimError(f"a batch must be a tensor or an (inputs, labels) pair, got {type(batch).__name__}")


MAX_RECORDED_BYTES = 8 * 2**30  # what one recording may hold in memory (activations, outputs)


def recorded_bytes_per_sample(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(input bytes, output bytes) the recorder keeps per sample at worst (dense activations):
    each compute layer's input as values and indices (8 B an element), its output (4 B), and
    the sample itself. Measured by one forward pass of `example` (one sample)."""
    counts = [int(example[:1].numel()), 0]

    def count(module, args, output):
        counts[0] += sum(int(a[:1].numel()) for a in args if isinstance(a, torch.Tensor))
        counts[1] += int(output[:1].numel())

    handles = [m.register_forward_hook(count) for m in model.modules() if is_compute(m)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # leaves the RNG as it was
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return 8 * counts[0], 4 * counts[1]


def check_recording_size(model: nn.Module, example: torch.Tensor, num_samples: int,
                         output_samples: int | None, option: str = "--samples") -> None:
    """Refuse, before any sample is made or recorded, a recording larger than
    MAX_RECORDED_BYTES (a sample count is bounded by what it costs, not by a fixed number)."""
    per_in, per_out = recorded_bytes_per_sample(model, example)
    n_out = num_samples if output_samples is None else min(output_samples, num_samples)
    total = num_samples * per_in + n_out * per_out
    if total > MAX_RECORDED_BYTES:
        most = MAX_RECORDED_BYTES // (per_in + (per_out if output_samples is None else 0))
        raise AccelsimError(
            f"{option} {num_samples}: the recording would hold about {total / 2**30:.1f} GiB of "
            f"activations (limit {MAX_RECORDED_BYTES / 2**30:.0f} GiB); at most {most} samples "
            "of this model" + ("" if output_samples is not None else
                               " (fewer --output-samples allow more)"))


def record_trace(model: nn.Module, batches, out_path, meta: dict,
                 output_samples: int | None = None, allow_unsimulated: bool = False) -> str:
    """Run `batches` (tensors or (x, y) pairs) through `model`, write the trace, return its path.
    allow_unsimulated: list compute ops the trace cannot represent as unsimulated (with their
    MACs) instead of refusing the model."""
    with TraceRecorder(model, output_samples, allow_unsimulated) as rec:
        for batch in batches:
            model(_as_input(batch))
    out_path = os.fspath(out_path)
    rec.write(out_path, meta)
    return out_path
