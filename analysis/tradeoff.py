"""MLP-3: MAC % against accuracy for JP and WP (is JP's MAC % at most half of WP's?).

    python -m accelsim.analysis.tradeoff train   [--runs runs] [--jobs 2]   # resumable
    python -m accelsim.analysis.tradeoff report  [--runs runs] [--csv F] [--plot F]

`train` runs every point of accelsim.models.recipes.MLP3_TRADEOFF from the dense MLP-3 run
(RUNS/mlp3-dense, made by `python -m accelsim.analysis.reproduce mnist`) into
RUNS/tradeoff/LABEL. `report` measures each finished point: accuracy on the 10,000 official test
images and on the 5,000 held-out training images, weight %, and both MAC % measures (the paper's
estimate, weight density x input density per layer, and the exact count of non-zero weight x
non-zero activation pairs); it writes the CSV and a figure with one panel per MAC % measure.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURE = REPO / "docs" / "figures" / "mlp3-tradeoff.png"
REFERENCE_POINT = "wp-fc1-08"  # Han's LeNet-300-100 setting: the WP row of docs/results.md


def _train_one(args: tuple) -> str:
    label, runs, data_dir = args
    from accelsim.models.recipes import mlp3_tradeoff_recipe
    from accelsim.models.train import train

    rec = mlp3_tradeoff_recipe(label)
    train("mlp3", rec.method, runs / "tradeoff" / label, recipe=rec,
          from_checkpoint=runs / "mlp3-dense", data_dir=data_dir, progress=False, threads=1,
          echo=None, command=["python", "-m", "accelsim.analysis.tradeoff", "train"])
    return label


def train_points(runs: Path, data_dir=None, jobs: int = 2, labels=None) -> None:
    from accelsim.models.recipes import MLP3_TRADEOFF

    if not (runs / "mlp3-dense" / "checkpoint").is_dir():
        raise SystemExit(f"{runs / 'mlp3-dense'}: no dense MLP-3 run (python -m "
                         "accelsim.analysis.reproduce mnist makes it)")
    todo = [(lab, runs, data_dir) for lab in (labels or MLP3_TRADEOFF)]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for label in pool.map(_train_one, todo):
            print(f"trained {label}", flush=True)


def measure_points(runs: Path, data_dir=None):
    """One row per finished point (pandas DataFrame)."""
    import pandas as pd

    from accelsim.analysis.results import measure_checkpoint, validation_accuracy
    from accelsim.models.recipes import MLP3_TRADEOFF

    rows = []
    for label, (method, fc1, threshold) in MLP3_TRADEOFF.items():
        d = runs / "tradeoff" / label
        if not (d / "checkpoint" / "checkpoint.json").is_file():
            continue
        r = measure_checkpoint(d, data_dir=data_dir)
        val, n_val = validation_accuracy(d, data_dir)
        layer = {x.name: x for x in r.layers}
        rows.append({"label": label, "method": method, "fc1_weight_density": fc1,
                     "fc1_input_threshold": threshold, "test_accuracy": 100 * r.accuracy,
                     "test_images": r.num_samples, "val_accuracy": 100 * val, "val_images": n_val,
                     "weight_pct": r.weight_pct, "fc1_input_density": 100 * layer["fc1"].in_density,
                     "mac_pct_estimate": r.mac_pct_estimate, "mac_pct_exact": r.mac_pct_exact})
    return pd.DataFrame(rows)


def plot(frame, out, bar: float | None = None) -> Path:
    """Accuracy against MAC % (left: the paper's estimate, right: exact), WP and JP points; the
    dotted vertical line is half the reference WP point's MAC %, the dashed horizontal one the
    accuracy bar."""
    from accelsim import plots
    from accelsim.plaintext import mpl_text

    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    ref = frame[frame["label"] == REFERENCE_POINT]
    for ax, col, name in zip(axes, ("mac_pct_estimate", "mac_pct_exact"),
                             ("paper's estimate", "exact")):
        for method, marker in (("wp", "s"), ("jp", "o")):
            rows = frame[frame["method"] == method].sort_values(col)
            if method == "jp":
                for masked, ls in ((False, "-"), (True, "--")):
                    part = rows[rows["fc1_input_threshold"].notna() == masked]
                    if not part.empty:
                        ax.plot(part[col], part["test_accuracy"], marker=marker, ls=ls,
                                label="JP" + (", fc1 input threshold" if masked else ""))
            else:
                ax.plot(rows[col], rows["test_accuracy"], marker=marker, label="WP (Han)")
            for _, r in rows.iterrows():
                ax.annotate(mpl_text(r["label"]), (r[col], r["test_accuracy"]), fontsize=6,
                            textcoords="offset points", xytext=(3, 3))
        if not ref.empty:
            ax.axvline(float(ref[col].iloc[0]) / 2, color="grey", ls=":", lw=1,
                       label=f"half of {REFERENCE_POINT}")
        if bar is not None:
            ax.axhline(bar, color="grey", ls="--", lw=0.8, label=f"accuracy bar {bar:.2f}%")
        ax.set_xlabel(f"MAC % ({name})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%, 10,000 official MNIST test images)")
    axes[0].set_title("MLP-3: MAC % (paper's estimate) vs accuracy")
    axes[1].set_title("MLP-3: MAC % (exact pairs) vs accuracy")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = plots.save_figure(fig, out, "--plot")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["train", "report"])
    parser.add_argument("--runs", default="runs", type=Path)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--jobs", type=int, default=2, help="points trained at once (1 thread each)")
    parser.add_argument("--only", nargs="*", default=None, help="train these labels only")
    parser.add_argument("--csv", default=None, help="write the measured points here")
    parser.add_argument("--plot", default=str(FIGURE))
    parser.add_argument("--bar", type=float, default=None,
                        help="accuracy bar (test %%) drawn on the figure")
    args = parser.parse_args(argv)
    if args.what == "train":
        train_points(args.runs, args.data_dir, args.jobs, args.only)
        return
    frame = measure_points(args.runs, args.data_dir)
    if frame.empty:
        raise SystemExit(f"{args.runs / 'tradeoff'}: no finished points (run `train` first)")
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.round(3).to_string(index=False))
    if args.csv:
        from accelsim.atomic import atomic_write

        atomic_write(args.csv, lambda tmp: frame.to_csv(tmp, index=False))
    print(f"wrote {plot(frame, args.plot, args.bar)}")


if __name__ == "__main__":
    main()
