"""Reads trace paths from stdin, one per line, under an address-space limit; answers one JSON line
per path: {"status": "ok", "digest"} | {"status": "user", "msg"} | {"status": "crash", "msg"}.

Used by the fuzz tests: a MemoryError here means the reader tried to allocate more than the
limit (default 1 GiB) for a small file; any exception other than AccelsimError is a crash.
Usage: python trace_reader_worker.py [limit_bytes]
"""

import hashlib
import json
import resource
import sys
import traceback

limit = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

import numpy as np  # noqa: E402

from accelsim.errors import AccelsimError  # noqa: E402
from accelsim.traces.info import trace_stats  # noqa: E402
from accelsim.traces.reader import validate_trace  # noqa: E402


def digest(trace) -> str:
    """Hash of the metadata and every array a reader hands out (what a user would get)."""
    h = hashlib.sha256(json.dumps(trace.meta, sort_keys=True).encode())
    for rec in trace.layers():
        for a in (rec.weight, rec.weight_mask, rec.bias, rec.outputs):
            h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
        for b in (rec.inputs, rec.premask, rec.act_mask):
            if b is not None:
                h.update(b.indptr.tobytes() + np.asarray(b.indices, np.int64).tobytes())
                h.update(b"" if b.values is None else b.values.tobytes())
    return h.hexdigest()


print(json.dumps({"status": "ready"}), flush=True)
for line in sys.stdin:
    path = line.rstrip("\n")
    try:
        t = validate_trace(path)
        trace_stats(t)
        out = {"status": "ok", "digest": digest(t)}
    except AccelsimError as exc:
        out = {"status": "user", "msg": str(exc)}
    except BaseException:  # noqa: BLE001 - everything else is what the fuzz test hunts for
        out = {"status": "crash", "msg": traceback.format_exc()}
    print(json.dumps(out), flush=True)
