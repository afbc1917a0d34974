"""Validation of checkpoint.json, field by field (no torch).

Every known field has a checker in FIELDS; each error is one line naming the file and the
field. Unknown top-level fields are accepted (forward-compatible additions); a feature that adds
a field registers its checker with `register_field`, so what it writes is validated on read too.
Numbers are parsed strictly (no NaN/Infinity, nothing that overflows a double or int64).
"""

from __future__ import annotations

from typing import Callable

from accelsim.errors import AccelsimError

FORMAT = "accelsim-checkpoint"
FORMAT_VERSION = 2  # 2: per-tensor checksums ("tensors"); 1 is still read
SUPPORTED_VERSIONS = (1, 2)
TENSOR_FILES = ("weights.safetensors", "masks.safetensors")
MASK_SCHEMES = ("off", "topk", "threshold-prediction", "static-threshold")
REQUIRED = ("format", "format_version", "model", "model_kwargs", "method")


class FieldError(Exception):
    """A problem with one value; the caller prefixes the file and the field path."""


Check = Callable[[object], None]


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           integer: bool = False, nullable: bool = False) -> Check:
    """A number (or integer) in [lo, hi] ((lo, hi] with lo_open), or null if nullable."""
    def check(x):
        if x is None and nullable:
            return
        ok = _int(x) if integer else _num(x)
        if ok and lo is not None:
            ok = x > lo if lo_open else x >= lo
        if ok and hi is not None:
            ok = x <= hi
        if not ok:
            kind = "an integer" if integer else "a number"
            rng = "" if lo is None and hi is None else \
                f" in {'(' if lo_open else '['}{'-inf' if lo is None else lo}, " \
                f"{'inf' if hi is None else hi}]"
            raise FieldError(f"must be {kind}{rng}{' or null' if nullable else ''}, got {x!r}")
    return check


def string(nonempty: bool = False, nullable: bool = False, choices: tuple | None = None) -> Check:
    def check(x):
        if x is None and nullable:
            return
        if not isinstance(x, str) or (nonempty and not x) or (choices and x not in choices):
            what = f"one of {', '.join(choices)}" if choices else \
                f"a{' non-empty' if nonempty else ''} string"
            raise FieldError(f"must be {what}{' or null' if nullable else ''}, got {x!r}")
    return check


def list_of(item: Check, nullable: bool = False) -> Check:
    def check(x):
        if x is None and nullable:
            return
        if not isinstance(x, list):
            raise FieldError(f"must be a list, got {type(x).__name__}")
        for i, v in enumerate(x):
            _at(f"[{i}]", item, v)
    return check


def mapping(values: Check | None = None, keys: dict[str, Check] | None = None,
            required: tuple[str, ...] = (), nullable: bool = False) -> Check:
    """An object: every value checked by `values`, or named keys by `keys` (others free)."""
    def check(x):
        if x is None and nullable:
            return
        if not isinstance(x, dict):
            raise FieldError(f"must be an object, got {type(x).__name__}")
        for k in required:
            if k not in x:
                raise FieldError(f"lacks {k!r}")
        for k, v in x.items():
            c = values if keys is None else keys.get(k)
            if c is not None:
                _at(f".{k}", c, v)
    return check


def anything(_x) -> None:
    """Free-form JSON (its numbers are already finite: the parser refuses the rest)."""


def _at(step: str, check: Check, value) -> None:
    try:
        check(value)
    except FieldError as exc:
        msg = str(exc)
        raise FieldError(f"{step}{msg}" if msg[:1] in ".[" else f"{step} {msg}") from None


_fraction = number(0, 1)
_accuracy = mapping(keys={"value": _fraction, "num_samples": number(1, integer=True),
                          "split": string(nullable=True), "note": string(nullable=True)},
                    required=("value", "num_samples"), nullable=True)
_crc = mapping(keys={"crc32": number(0, 2**32 - 1, integer=True)}, required=("crc32",))

FIELDS: dict[str, Check] = {
    "format": string(choices=(FORMAT,)),
    "format_version": number(integer=True),
    "model": string(nonempty=True),
    "model_kwargs": mapping(values=anything),  # the factory checks its own arguments
    "method": string(nonempty=True),
    "dataset": string(nonempty=True),
    "input_normalization": mapping(keys={
        "mean": list_of(number()), "std": list_of(number(0, lo_open=True)),
        "input_size": list_of(number(1, integer=True))}, required=("mean", "std")),
    "method_params": mapping(values=anything),
    "recipe": mapping(values=anything),
    "layers": mapping(values=mapping(keys={"weight_density": _fraction})),
    "metrics": mapping(keys={"accuracy": _accuracy,
                             "history": list_of(mapping(values=anything))}),
    "epochs": mapping(keys={"done": number(0, integer=True), "planned": number(0, integer=True)}),
    "seed": number(integer=True, nullable=True),
    "limit_train": number(1, integer=True, nullable=True),
    "from": mapping(keys={"path": string(), "method": string(nullable=True),
                          "accuracy": _accuracy}, nullable=True),
    "command": list_of(string()),
    "activation_masks": mapping(values=mapping(keys={
        "scheme": string(choices=MASK_SCHEMES), "winner_rate": number(0, 1, nullable=True),
        "threshold": number(0, nullable=True), "eps": number(0, 1, lo_open=True, nullable=True)},
        required=("scheme",))),
    "dropout": mapping(values=_fraction),
    "weight_masks": mapping(values=mapping(keys={
        "density": _fraction, "shape": list_of(number(0, integer=True))})),
    "software": mapping(values=string(nullable=True)),
    "hardware": mapping(values=string(nullable=True)),
    "created": string(),
    "tensors": mapping(keys={f: mapping(values=_crc) for f in TENSOR_FILES},
                       required=TENSOR_FILES),
    # a model outside the zoo (accelsim.models.usermodel, docs/own-model.md)
    "source": mapping(keys={"file": string(nonempty=True), "factory": string(nonempty=True),
                            "sha256": string(nullable=True)}, required=("file", "factory")),
    "mask_locations": mapping(keys={"before": list_of(string(nonempty=True)),
                                    "after": list_of(string(nonempty=True))}),
    "input_shape": list_of(number(1, integer=True)),
}


def register_field(name: str, check: Check) -> None:
    """Validate a new top-level field of checkpoint.json (for features that add one)."""
    FIELDS[name] = check


def check_info(info, path) -> None:
    """Every field of a parsed checkpoint.json, in file order; one error line naming the file."""
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise AccelsimError(f"{path}: not an accelsim checkpoint (format field missing or wrong)")
    version = info.get("format_version")
    if version not in SUPPORTED_VERSIONS or not _int(version):
        raise AccelsimError(f"{path}: unsupported checkpoint format_version {version!r} "
                            f"(this accelsim reads {', '.join(map(str, SUPPORTED_VERSIONS))})")
    required = REQUIRED + (("tensors",) if version >= 2 else ())
    missing = [k for k in required if k not in info]
    if missing:
        raise AccelsimError(f"{path}: checkpoint metadata lacks {', '.join(map(repr, missing))}")
    for key, value in info.items():
        check = FIELDS.get(key)
        if check is None:
            continue
        try:
            check(value)
        except FieldError as exc:
            msg = str(exc)
            sep = "" if msg[:1] in ".[" else " "
            raise AccelsimError(f"{path}: field {key!r}{sep}{msg}") from None
    ep = info.get("epochs")
    if isinstance(ep, dict) and _int(ep.get("done")) and _int(ep.get("planned")) \
            and ep["done"] > ep["planned"]:
        raise AccelsimError(f"{path}: field 'epochs' has done {ep['done']} > planned "
                            f"{ep['planned']}")
