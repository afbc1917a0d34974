"""Record a trace of a checkpoint on the first N images of a split, masks active.

The accuracy stored in the trace is measured on exactly the recorded samples (with their count),
so a trace never claims more than it shows; the checkpoint's own accuracy (on its full split)
is kept next to it in meta["checkpoint"].
"""

from __future__ import annotations

import sys

import torch

from accelsim.errors import AccelsimError


def record_checkpoint(checkpoint_dir, num_samples: int, out_path, data_dir=None,
                      output_samples: int | None = None, split: str = "test",
                      batch_size: int = 100, command: list | None = None,
                      threshold_prediction_eps: float | None = None,
                      fold_batchnorm: bool = False, allow_unsimulated: bool = False) -> dict:
    """Write the trace of `checkpoint_dir` on the first `num_samples` images of `split`;
    returns the trace metadata written. `threshold_prediction_eps` switches every top-k mask
    to threshold prediction (JPnet Eq. 11) for this recording (inference option).
    `fold_batchnorm` folds each BatchNorm into the Conv2d/Linear before it (traces.foldbn);
    `allow_unsimulated` lists compute ops a trace cannot represent instead of refusing them."""
    from accelsim.models import checkpoint as C
    from accelsim.models.data import load_dataset, make_batches
    from accelsim.models.train import transform_for
    from accelsim.models.usermodel import dataset_of
    from accelsim.traces.recorder import TraceRecorder, check_recording_size

    if num_samples < 1:
        raise AccelsimError(f"--samples must be >= 1, got {num_samples}")
    model, info = C.load_checkpoint(checkpoint_dir)
    if threshold_prediction_eps is not None:
        from accelsim.models.methods import use_threshold_prediction

        use_threshold_prediction(model, threshold_prediction_eps)
    ds = load_dataset(dataset_of(info), split, data_dir)
    if num_samples > len(ds):
        raise AccelsimError(f"--samples {num_samples}: the {split} split holds only {len(ds)} "
                            f"images ({ds.note})")
    from accelsim.models.train import input_normalization

    saved = info.get("input_normalization")
    now = input_normalization(info)
    if saved is not None and (saved["mean"], saved["std"]) != (now["mean"], now["std"]):
        import warnings

        warnings.warn(f"{checkpoint_dir}: trained with input mean/std {saved['mean']}/"
                      f"{saved['std']}, recording with {now['mean']}/{now['std']}; retrain the "
                      "checkpoint with the current preprocessing", stacklevel=2)
    sub = ds.subset(range(num_samples))
    tf = transform_for(info, train=False)
    first, _ = next(iter(make_batches(ds.subset(range(1)), 1, shuffle=False, transform=tf)))
    check_recording_size(model, first, num_samples, output_samples)
    folded = []
    if fold_batchnorm:
        from accelsim.traces.foldbn import fold_batchnorm as fold

        folded = fold(model, first)
    correct = 0
    with TraceRecorder(model, output_samples=output_samples,
                       allow_unsimulated=allow_unsimulated) as rec:
        for x, y in make_batches(sub, batch_size, shuffle=False, transform=tf):
            with torch.no_grad():
                correct += int((model(x).argmax(1) == y).sum())
    meta = {
        "model": info["model"],
        "method": info["method"],
        "dataset": dataset_of(info),
        "split": split,
        "sample_indices": [int(i) for i in sub.indices.tolist()],
        "accuracy": {"value": correct / num_samples, "num_samples": num_samples},
        "seed": info.get("seed"),
        "software": C.software_versions(),
        "command": list(command) if command is not None else list(sys.argv),
        "checkpoint": {"path": str(C.resolve_checkpoint_dir(checkpoint_dir)),
                       "accuracy": info.get("metrics", {}).get("accuracy"),
                       "recipe": info.get("recipe", {}).get("name")},
    }
    if fold_batchnorm:
        meta["folded_batchnorm"] = [{"layer": layer, "batchnorm": bn} for layer, bn in folded]
    if any(m != 0.0 for m in now["mean"]):
        meta["warnings"] = [f"inputs normalised with mean {now['mean']} and std {now['std']}: zero "
                            "pixels become non-zero, so the first layer's input density is not "
                            "the images' (normalisation is the recipe's opt-in)"]
    rec.write(out_path, meta)
    return meta
