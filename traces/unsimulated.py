"""The ops a trace lists without simulating them (docs/trace-format.md, section 2.2): the
metadata key `unsimulated`, its checks, and the operation counts the report's coverage uses.
numpy-free and torch-free: the reader and the simulator both use it."""

from __future__ import annotations

KEY = "unsimulated"
CATEGORIES = ("normalisation", "activation", "pooling", "elementwise", "softmax", "reduction",
              "data movement", "compute")
OPS_PER_MAC = 2  # a multiply-accumulate is a multiply and an add
MAX_COUNT = (1 << 63) - 1


def _int(x, least: int = 0) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and least <= x <= MAX_COUNT


def check(meta: dict, fail) -> None:
    """`unsimulated`, when present: a list of op objects (fail(problem) on the first bad one)."""
    if KEY not in meta:
        return
    ops = meta[KEY]
    if not isinstance(ops, list):
        fail(f"metadata {KEY!r} must be a list of op objects")
    n_layers = len(meta["layers"])
    names = set()
    for i, op in enumerate(ops):
        where = f"{KEY}[{i}]"
        if not isinstance(op, dict):
            fail(f"{where} is not an object")
        for key in ("name", "op"):
            if not isinstance(op.get(key), str) or not op[key]:
                fail(f"{where}: {key!r} must be a non-empty string")
        if op["name"] in names:
            fail(f"{where}: duplicate name {op['name']!r}")
        names.add(op["name"])
        if op.get("category") not in CATEGORIES:
            fail(f"{where} ({op['name']}): 'category' must be one of {', '.join(CATEGORIES)}")
        for key in ("ops", "macs"):
            if not _int(op.get(key)):
                fail(f"{where} ({op['name']}): {key!r} must be an integer >= 0")
        if op["ops"] < OPS_PER_MAC * op["macs"]:
            fail(f"{where} ({op['name']}): 'ops' {op['ops']} is less than {OPS_PER_MAC} x "
                 f"'macs' {op['macs']}")
        if op["macs"] and op["category"] != "compute":
            fail(f"{where} ({op['name']}): only a 'compute' op has MACs")
        if not _int(op.get("after_layers")) or op["after_layers"] > n_layers:
            fail(f"{where} ({op['name']}): 'after_layers' must be an integer in [0, {n_layers}]")
        shape = op.get("out_shape")
        if not (isinstance(shape, list) and all(_int(d) for d in shape)):
            fail(f"{where} ({op['name']}): 'out_shape' must be a list of integers >= 0")


def listed(meta: dict) -> list[dict] | None:
    """The trace's unsimulated ops, or None when the trace does not list them (written before
    the key existed, or by a writer that does not account for them: coverage unknown)."""
    ops = meta.get(KEY)
    return None if ops is None else list(ops)
