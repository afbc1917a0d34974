"""`accelsim trace ...` commands: info, validate, synth. Only click is imported at the top;
numpy, rich, pandas and torch load inside the commands that need them."""

from __future__ import annotations

import click

from accelsim import cli_options as O


@click.group("trace")
def trace() -> None:
    """Record, inspect, validate and synthesise trace files."""


def _shape(s) -> str:
    return "x".join(str(int(d)) for d in s)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _macs(x: float) -> str:
    return f"{x:,.0f}"


_ZEROS = {
    "relu": "ReLU, no masks: no top-k unit runs",
    "topk": "top-k masks: the top-k unit runs",
    "threshold": "threshold-prediction masks: the top-k unit runs",
}


@trace.command("info")
@click.argument("path")
def info(path: str) -> None:
    """Per-layer densities, dense and effective MACs of the trace at PATH."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from accelsim.plaintext import rich_text as txt
    from accelsim.traces.info import trace_stats
    from accelsim.traces.reader import open_trace

    t = open_trace(path)
    df = trace_stats(t)
    m = t.meta
    acc = m["accuracy"]
    acc_s = "n/a" if acc is None else f"{100 * acc['value']:.2f}% on {acc['num_samples']} samples"
    split = f" ({m['split']})" if m.get("split") else ""
    console = Console(width=None if sys.stdout.isatty() else 200)  # files/pipes: no wrapping
    console.print(txt(f"trace: {path}"))  # names from the file: plain text, never markup
    console.print(txt(f"model: {m['model']}   method: {m['method']}   dataset: {m['dataset']}{split}"))
    console.print(f"samples: {m['num_samples']} (outputs kept for {m['output_samples']})   "
                  f"accuracy: {acc_s}   format: v{m['format_version']}", highlight=False)
    synth = m.get("synthetic") or {}
    if isinstance(synth, dict) and synth.get("act_zeros") in _ZEROS:
        console.print(f"activation zeros: {_ZEROS[synth['act_zeros']]}", highlight=False)
    elif synth:  # written before act_zeros existed: the layers' masks say it
        masked = df["dynamic_mask"].map(lambda v: isinstance(v, str)).any()
        console.print(f"activation zeros: {_ZEROS['topk' if masked else 'relu']}", highlight=False)
    for warning in m.get("warnings") or []:
        console.print(f"warning: {warning}", highlight=False, markup=False)
    table = Table(show_footer=True)
    tot_w = df["weights"].sum()
    dense, eff, est = df["dense_macs"].sum(), df["effective_macs"].sum(), df["estimated_macs"].sum()
    cols = [
        ("layer", "total"), ("kind", ""), ("in", ""), ("out", ""),
        ("weight dens.", _pct(df["weight_nnz"].sum() / max(tot_w, 1))),
        ("act dens. mean", ""), ("act min", ""), ("act max", ""), ("mask", ""),
        ("dense MACs", _macs(dense)), ("effective MACs", _macs(eff)),
        ("eff/dense", _pct(eff / max(dense, 1))), ("paper estimate", _macs(est)),
    ]
    for i, (name, foot) in enumerate(cols):
        table.add_column(name, footer=foot, justify="left" if i < 4 else "right")
    for r in df.itertuples(index=False):
        table.add_row(txt(r.layer), txt(r.kind), _shape(r.in_shape), _shape(r.out_shape),
                      _pct(r.weight_density), _pct(r.act_density_mean), _pct(r.act_density_min),
                      _pct(r.act_density_max),
                      txt(r.dynamic_mask) if isinstance(r.dynamic_mask, str) else "-", _macs(r.dense_macs),
                      _macs(r.effective_macs), _pct(r.effective_macs / max(r.dense_macs, 1)),
                      _macs(r.estimated_macs))
    console.print(table)
    console.print(txt(unsimulated_line(m, int(dense))), highlight=False)


def unsimulated_line(meta: dict, layer_macs: int) -> str:
    """What the trace lists without simulating it, by op, and the layers' share of operations."""
    from collections import Counter

    from accelsim.traces.unsimulated import OPS_PER_MAC, listed

    ops = listed(meta)
    if ops is None:
        return "not simulated: not listed (the trace does not account for its other ops)"
    layer_ops = OPS_PER_MAC * layer_macs
    total = layer_ops + sum(op["ops"] for op in ops)
    kinds = Counter(op["op"] for op in ops)
    share = 100 * layer_ops / total if total else 100.0
    return (f"not simulated: {len(ops)} op(s) ({', '.join(f'{k} x{n}' for k, n in kinds.items()) or 'none'}); "
            f"the layers hold {share:.1f}% of {total:,} operations per sample (a MAC = 2)")


@trace.command("validate")
@click.argument("path")
def validate(path: str) -> None:
    """Check every field of every layer of the trace at PATH, checksums included, and recompute
    each layer's recorded outputs from its weights and inputs (exit 2 on the first problem)."""
    from accelsim.traces.reader import validate_trace

    t = validate_trace(path)
    checked = f"outputs of {t.output_samples} samples recomputed" if t.output_samples else \
        "no outputs recorded, functional check skipped"
    click.echo(f"{path}: ok ({len(t)} layers, {t.num_samples} samples, {checked}, "
               f"format v{t.meta['format_version']})")


def _density(value: str, option: str):
    """A float, or layer=density pairs separated by commas."""
    from accelsim.errors import AccelsimError

    try:
        if "=" not in value:
            return float(value)
        out = {}
        for part in value.split(","):
            k, v = part.split("=")
            out[k.strip()] = float(v)
        return out
    except ValueError:
        raise AccelsimError(f"{option}: expected a number or layer=density pairs, got {value!r}") from None


@trace.command("synth")
@click.option("--model", "model", required=True, help="zoo model (mlp3, lenet4, convnet5, alexnet, resnet50, wrn32)")
@click.option("--weight-density", default="1.0", show_default=True,
              help="kept weights per layer: a fraction, or layer=fraction,... (others dense)")
@click.option("--act-density", default="1.0", show_default=True,
              help="input density of every hidden layer, or layer=density,... (others as the "
                   "random network leaves them)")
@click.option("--masks", "masks", default="relu", show_default=True,
              type=click.Choice(["relu", "topk", "threshold"]),
              help="relu: zeros from the ReLUs (biases shifted; no masks, no top-k unit); "
                   "topk / threshold: dynamic per-sample masks that the top-k unit computes")
@click.option("--eps", default=0.1, show_default=True, type=O.FRACTION,
              help="subsample fraction of threshold prediction (--masks threshold)")
@click.option("--samples", default=1, show_default=True, type=O.SAMPLES, help="random input images")
@click.option("--seed", default=0, show_default=True, type=O.SEED)
@click.option("--output-samples", default=None, type=O.OUTPUT_SAMPLES,
              help="samples whose outputs are kept (default all)")
@click.option("--out", "out", required=True,
              help="trace file to write (.trace.safetensors; checked before any work)")
def synth(model: str, weight_density: str, act_density: str, masks: str, eps: float, samples: int,
          seed: int, output_samples: int | None, out: str) -> None:
    """Write a synthetic trace of a zoo model (random weights and images, chosen densities).

    By default the activation zeros are ReLU zeros, as in EIE's and Cnvlutin's benchmarks;
    --masks topk makes them with dynamic masks, which the simulator charges to the top-k unit."""
    from accelsim.atomic import check_output_file
    from accelsim.traces.synthetic import synthetic_trace

    check_output_file(out, kind="trace")
    path = synthetic_trace(model, out, _density(weight_density, "--weight-density"),
                           _density(act_density, "--act-density"), samples, seed, output_samples,
                           masks=masks, eps=eps)
    click.echo(f"wrote {path} (activation zeros: {_ZEROS[masks]})")


@trace.command("record")
@click.option("--checkpoint", "checkpoint", required=True, type=click.Path(),
              help="checkpoint directory written by `accelsim train` (or its run directory)")
@click.option("--samples", default=256, show_default=True, type=O.SAMPLES,
              help="record the first N images of the split")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "train"]))
@click.option("--output-samples", default=None, type=O.OUTPUT_SAMPLES,
              help="samples whose layer outputs are kept for the functional check (default all)")
@click.option("--eps", default=None, type=O.FRACTION,
              help="replace every top-k mask by threshold prediction from an eps-subsample")
@click.option("--data-dir", default=None, type=click.Path(), help="data root (else the search path)")
@click.option("--fold-batchnorm", is_flag=True,
              help="fold each BatchNorm into the Conv2d/Linear in front of it (inference, as "
                   "deployed accelerators do)")
@click.option("--allow-unsimulated", is_flag=True,
              help="list compute ops a trace cannot represent (attention, Conv1d, LSTM, ...) as "
                   "unsimulated with their MACs instead of refusing the model")
@click.option("--out", "out", required=True,
              help="trace file to write (.trace.safetensors; checked before any work)")
def record(checkpoint, samples, split, output_samples, eps, data_dir, fold_batchnorm,
           allow_unsimulated, out):
    """Record a trace of a trained checkpoint on real images (masks active)."""
    import sys

    from accelsim.atomic import check_output_file
    from accelsim.models.record import record_checkpoint

    check_output_file(out, kind="trace")
    meta = record_checkpoint(checkpoint, samples, out, data_dir=data_dir,
                             output_samples=output_samples, split=split,
                             command=["accelsim", *sys.argv[1:]],
                             threshold_prediction_eps=eps, fold_batchnorm=fold_batchnorm,
                             allow_unsimulated=allow_unsimulated)
    acc = meta["accuracy"]
    if fold_batchnorm:
        pairs = meta["folded_batchnorm"]
        click.echo(f"folded {len(pairs)} BatchNorm layer(s): "
                   + (", ".join(f"{p['batchnorm']} into {p['layer']}" for p in pairs) or "none"))
    click.echo(f"wrote {out}: {meta['model']}/{meta['method']}, {samples} {split} images, "
               f"accuracy {acc['value']:.4f} on {acc['num_samples']}")


def register(cli: click.Group) -> None:
    cli.add_command(trace)
