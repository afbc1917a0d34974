#!/usr/bin/env bash
# The README's quick path: train, prune, trace and replay LeNet-4 on a slice of MNIST with the
# `quick` recipes (a few epochs), in a few minutes on a 2-core CPU. Run it from an empty folder.
set -euo pipefail

accelsim train --model lenet4 --method dense --recipe quick --limit-train 10000 --out runs/lenet4-dense
accelsim train --model lenet4 --method wp --recipe quick --from runs/lenet4-dense --limit-train 10000 --out runs/lenet4-wp
accelsim train --model lenet4 --method jp --recipe quick --from runs/lenet4-dense --limit-train 10000 --out runs/lenet4-jp
accelsim trace record --checkpoint runs/lenet4-wp --samples 64 --out lenet4-wp.trace.safetensors
accelsim trace record --checkpoint runs/lenet4-jp --samples 64 --out lenet4-jp.trace.safetensors
accelsim trace info lenet4-jp.trace.safetensors
accelsim run --trace lenet4-jp.trace.safetensors --trace lenet4-wp.trace.safetensors --arch eie64 --out report.csv
accelsim trace record --checkpoint runs/lenet4-jp --samples 64 --eps 0.1 --out lenet4-jp-threshold.trace.safetensors
accelsim run --trace lenet4-jp-threshold.trace.safetensors --arch cnvlutin --set topk.scheme=threshold
accelsim plot energy report.csv -o energy.png
accelsim sweep winner-rates --checkpoint runs/lenet4-dense --rates 0.05,0.1,0.2,0.5,1 --limit 500 --out sweep.csv --plot fig8.png
