"""The JPnet tables' columns measured on our checkpoints: accuracy, weight %, activation %,
MAC % (the paper's estimate and the exact count), per layer and in total.

Conventions follow the JPnet paper ("Joint Regularization on Activations and Weights for
Efficient Neural Network Pruning", Tables II-IV):
- Weight % of a layer: its non-zero weights / its weights; total over all compute layers.
- Acti % of layer l: the non-zero fraction of l's output as it reaches layer l+1 (after pooling
  and the mask), i.e. the input density of layer l+1; the last layer's output counts 100%. The
  total weights each layer's value by that tensor's size (it reproduces the tables' totals).
- MAC % of layer l: weight density x input density (Han's estimate); the total weights each
  layer by its dense MACs. Next to it, the exact count of non-zero weight x non-zero activation
  pairs (what a zero-skipping array actually multiplies).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LayerRow:
    name: str
    weights: int
    dense_macs: int
    weight_pct: float
    in_density: float  # non-zero fraction of the layer's input
    out_elements: int  # elements per sample of the layer's output as the next layer sees it
    out_density: float  # Acti % of the tables (1.0 for the last layer)
    mac_pct_estimate: float
    mac_pct_exact: float


@dataclass
class ModelRow:
    model: str
    method: str
    accuracy: float
    num_samples: int
    split: str
    layers: list[LayerRow]

    @property
    def weight_pct(self) -> float:
        return 100.0 * sum(r.weights * r.weight_pct / 100 for r in self.layers) / sum(r.weights for r in self.layers)

    @property
    def act_pct(self) -> float:
        num = sum(r.out_elements * r.out_density for r in self.layers)
        return 100.0 * num / sum(r.out_elements for r in self.layers)

    @property
    def mac_pct_estimate(self) -> float:
        return sum(r.dense_macs * r.mac_pct_estimate for r in self.layers) / sum(r.dense_macs for r in self.layers)

    @property
    def mac_pct_exact(self) -> float:
        return sum(r.dense_macs * r.mac_pct_exact for r in self.layers) / sum(r.dense_macs for r in self.layers)


def validation_accuracy(checkpoint, data_dir=None, val_size: int = 5000) -> tuple[float, int]:
    """Accuracy on the training images the run held out (same split as training and sweeps)."""
    from accelsim.analysis.sweeps import validation_set
    from accelsim.models.checkpoint import load_checkpoint
    from accelsim.models.train import evaluate, transform_for
    from accelsim.models.usermodel import dataset_of

    model, info = load_checkpoint(checkpoint)
    val = validation_set(dataset_of(info), val_size=val_size,
                         seed=int(info.get("seed") or 0), data_dir=data_dir)
    return evaluate(model, val, transform_for(info, train=False))


def measure_checkpoint(checkpoint, split: str = "test", data_dir=None, limit: int | None = None) -> ModelRow:
    """Evaluate a checkpoint (masks active) on a split and fill the table columns."""
    import torch

    from accelsim.analysis.sweeps import MacCounter
    from accelsim.models.checkpoint import load_checkpoint
    from accelsim.models.counting import count_layers
    from accelsim.models.data import load_dataset, make_batches
    from accelsim.models.train import transform_for
    from accelsim.models.usermodel import dataset_of, input_shape_of

    model, info = load_checkpoint(checkpoint)
    model.eval()
    data = load_dataset(dataset_of(info), split, data_dir)
    if limit:
        data = data.subset(range(min(limit, len(data))))
    correct = n = 0
    with torch.no_grad(), MacCounter(model) as counter:
        for x, y in make_batches(data, 500, shuffle=False, transform=transform_for(info, False)):
            correct += int((model(x).argmax(1) == y).sum())
            n += int(y.numel())
    counts = count_layers(model, input_shape_of(info))
    modules = dict(model.named_modules())
    rows = []
    for i, c in enumerate(counts):
        w = modules[c.name].weight.detach()
        wd = float((w != 0).float().mean())
        nxt = counts[i + 1].name if i + 1 < len(counts) else None
        rows.append(LayerRow(
            name=c.name,
            weights=int(c.weight_count),
            dense_macs=int(c.macs),
            weight_pct=100.0 * wd,
            in_density=counter.density(c.name),
            out_elements=counter.in_total[nxt] // n if nxt else int(c.out_shape[0]),
            out_density=counter.density(nxt) if nxt else 1.0,
            mac_pct_estimate=100.0 * wd * counter.density(c.name),
            mac_pct_exact=100.0 * counter.effective[c.name] / counter.dense[c.name],
        ))
    return ModelRow(info["model"], info["method"], correct / n, n, split, rows)


def markdown_table(row: ModelRow) -> str:
    """The paper's per-layer table for one checkpoint."""
    lines = [
        "| layer | weights | dense MACs | Acti % | Weight % | MAC % (est.) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in row.layers:
        lines.append(f"| {r.name} | {r.weights:,} | {r.dense_macs:,} | {100 * r.out_density:.1f} | "
                     f"{r.weight_pct:.1f} | {r.mac_pct_estimate:.2f} |")
    lines.append(f"| total | {sum(r.weights for r in row.layers):,} | {sum(r.dense_macs for r in row.layers):,} | "
                 f"{row.act_pct:.1f} | {row.weight_pct:.1f} | {row.mac_pct_estimate:.2f} "
                 f"(exact {row.mac_pct_exact:.2f}) |")
    return "\n".join(lines)
