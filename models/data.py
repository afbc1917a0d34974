"""Real MNIST and CIFAR-10 from their official files: found, checksum-verified, strictly parsed.

Why our own loader: no torchvision, no downloads (machines may be offline), no pickle (the
CIFAR-10 "python" batches are pickles; we read the binary version), and every defect in a data
file becomes one AccelsimError line naming the file. See docs/data.md.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from accelsim.errors import AccelsimError

from .transforms import Transform, scale_to_unit

ENV_VAR = "ACCELSIM_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("mnist", "cifar10")
SPLITS = ("train", "test")

# ---------------------------------------------------------------------------------------------
# Official files. gz md5s and CIFAR md5s are the published ones (/work/shared/data/README.md);
# raw MNIST md5s are those of the decompressed official gz files, computed once.

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_SIZE = {
    "train-images-idx3-ubyte.gz": 9912422,
    "train-labels-idx1-ubyte.gz": 28881,
    "t10k-images-idx3-ubyte.gz": 1648877,
    "t10k-labels-idx1-ubyte.gz": 4542,
    "train-images-idx3-ubyte": 47040016,
    "train-labels-idx1-ubyte": 60008,
    "t10k-images-idx3-ubyte": 7840016,
    "t10k-labels-idx1-ubyte": 10008,
}

CIFAR_RECORD = 3073  # 1 label byte + 3 x 32 x 32 pixel bytes
CIFAR_TRAIN_FILES = tuple(f"data_batch_{k}.bin" for k in range(1, 6))
CIFAR_TEST_FILE = "test_batch.bin"
CIFAR_TEST_PARTIAL = "test_batch_first1000.bin"  # first 1,000 official test records
CIFAR_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
    "test_batch_first1000.bin": "371f65da31ad652f5e24b3699a3e6515",
}
CIFAR_SIZE = {name: 10000 * CIFAR_RECORD for name in CIFAR_TRAIN_FILES + (CIFAR_TEST_FILE,)}
CIFAR_SIZE[CIFAR_TEST_PARTIAL] = 1000 * CIFAR_RECORD

MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
OFFICIAL_SIZE = {("mnist", "train"): 60000, ("mnist", "test"): 10000,
                 ("cifar10", "train"): 50000, ("cifar10", "test"): 10000}  # fmt: skip


class IncompleteTestSetWarning(UserWarning):
    """The official test set is not all there; evaluation uses the part that is."""


# ---------------------------------------------------------------------------------------------
# The in-memory data set.


@dataclass
class ImageSet:
    """Images and labels of one split, with the official indices of the samples held.

    images: uint8 (N, C, H, W); labels: int64 (N,); indices: int64 (N,), the position of each
    sample in the official split (so a subset or a partial test set stays traceable).
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str
    note: str
    indices: torch.Tensor
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dim() != 4 or self.images.dtype != torch.uint8:
            raise ValueError(f"ImageSet.images must be uint8 (N, C, H, W), got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (n,) or self.labels.dtype != torch.int64:
            raise ValueError(f"ImageSet.labels must be int64 ({n},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")
        if self.indices.shape != (n,) or self.indices.dtype != torch.int64:
            raise ValueError(f"ImageSet.indices must be int64 ({n},)")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def is_complete(self) -> bool:
        """True when this holds the whole official split."""
        return len(self) == OFFICIAL_SIZE.get((self.name, self.split), -1)

    def class_counts(self) -> list[int]:
        """Images per label 0..K-1."""
        k = len(self.classes) or int(self.labels.max()) + 1
        return torch.bincount(self.labels, minlength=k).tolist()

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> "ImageSet":
        """The samples at these positions of this set (positions, not official indices; a
        boolean mask of length N also works)."""
        idx = torch.as_tensor(np.asarray(indices)).reshape(-1)
        if idx.dtype == torch.bool:
            if idx.numel() != len(self):
                raise ValueError(f"subset: mask of {idx.numel()} for {len(self)} samples")
            idx = idx.nonzero().reshape(-1)
        idx = idx.to(torch.int64)
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            name=self.name,
            split=self.split,
            note=f"{self.note}; subset of {idx.numel()}",
            indices=self.indices[idx],
            classes=self.classes,
        )


# ---------------------------------------------------------------------------------------------
# Finding the data.


def _dataset_name(dataset: str) -> str:
    key = dataset.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise AccelsimError(f"unknown data set {dataset!r}; choose one of: {', '.join(DATASETS)}")
    return key


def _split_name(split: str) -> str:
    if split not in SPLITS:
        raise AccelsimError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split


def _search_roots(data_dir: str | os.PathLike | None) -> tuple[list[Path], str]:
    """Data roots to try, in order, and where they came from (for error messages).

    An explicit data_dir, else ACCELSIM_DATA, is the only root searched: a wrong path there
    must fail, not silently fall back to some other copy of the data.
    """
    if data_dir is not None and str(data_dir) != "":
        return [Path(data_dir).expanduser()], "from data_dir / --data-dir"
    env = os.environ.get(ENV_VAR, "")
    if env:
        return [Path(env).expanduser()], f"from ${ENV_VAR}"
    roots: list[Path] = []
    for base in (Path.cwd(), REPO_ROOT):
        for rel in ("data", "../shared/data", "../../shared/data"):
            p = (base / rel).resolve()
            if p not in roots:
                roots.append(p)
    return roots, "default search path"


def _subdirs(dataset: str) -> tuple[str, ...]:
    if dataset == "mnist":
        return ("", "mnist", "MNIST/raw")
    return ("", "cifar10", "cifar-10-batches-bin")


def _file_dirs(dataset: str, ds_dir: Path) -> list[Path]:
    """Folders of a data set folder that may hold its files."""
    if dataset == "mnist":
        return [ds_dir]
    dirs = [ds_dir, ds_dir / "cifar-10-batches-bin"]
    if ds_dir.name == "cifar-10-batches-bin":
        dirs.append(ds_dir.parent)  # test_batch_first1000.bin sits beside the official folder
    return dirs


def _official_names(dataset: str) -> list[str]:
    if dataset == "mnist":
        return list(MNIST_MD5)
    return list(CIFAR_MD5)


def _holds(dataset: str, ds_dir: Path) -> bool:
    names = _official_names(dataset)
    return any((d / n).is_file() for d in _file_dirs(dataset, ds_dir) for n in names)


def find_dataset_dir(dataset: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding a data set's official files: the first root (data_dir, else
    $ACCELSIM_DATA, else ./data, ../shared/data, ../../shared/data from the current directory
    and from the repository root) that holds them directly or in its mnist/ or cifar10/
    subfolder."""
    dataset = _dataset_name(dataset)
    roots, origin = _search_roots(data_dir)
    for root in roots:
        for sub in _subdirs(dataset):
            cand = root / sub if sub else root
            if cand.is_dir() and _holds(dataset, cand):
                return cand
    subs = ", ".join(f"{s}/" for s in _subdirs(dataset) if s)
    raise AccelsimError(
        f"{dataset} data not found: none of its official files (e.g. {_official_names(dataset)[0]})"
        f" in {'; '.join(str(r) for r in roots)} ({origin}; each directly and in {subs}); "
        f"pass --data-dir or set {ENV_VAR}"
    )


def _locate(dataset: str, ds_dir: Path, names: Sequence[str], what: str) -> Path:
    """The first of `names` found in the data set folder, or one error naming them all."""
    dirs = _file_dirs(dataset, ds_dir)
    for name in names:
        for d in dirs:
            if (d / name).is_file():
                return d / name
    raise AccelsimError(
        f"{dataset} {what} file {' or '.join(names)} not found; looked in: "
        f"{'; '.join(str(d) for d in dirs)}"
    )


# ---------------------------------------------------------------------------------------------
# Reading and verifying files.

_VERIFIED: dict[tuple[str, int, int, str], bool] = {}  # (path, size, mtime_ns, md5) -> ok
_WARNED: set[str] = set()


def _read(path: Path, expected_size: int | None, expected_md5: str | None) -> bytes:
    """The file's bytes, after a size and md5 check (md5 skipped when this process already
    verified the same path, size and mtime)."""
    try:
        st = path.stat()
        if expected_size is not None and st.st_size != expected_size:
            raise AccelsimError(
                f"{path}: {st.st_size} bytes, expected {expected_size} (truncated or not the "
                f"official file)"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise AccelsimError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if expected_md5 is not None:
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, expected_md5)
        if key not in _VERIFIED:
            got = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if got != expected_md5:
                raise AccelsimError(
                    f"{path}: md5 checksum mismatch (got {got}, expected {expected_md5}); the "
                    f"file is corrupt or not the official one"
                )
            _VERIFIED[key] = True
    return data


def clear_checksum_cache() -> None:
    """Forget which files were verified (tests; files replaced in place with the same mtime)."""
    _VERIFIED.clear()


# ---------------------------------------------------------------------------------------------
# MNIST (IDX format).


def _parse_idx(path: Path, data: bytes, ndim: int, count: int | None) -> np.ndarray:
    """Strict IDX parse of unsigned-byte data: magic 0x0000 08 <ndim>, big-endian dims, then
    exactly prod(dims) bytes."""
    header = 4 + 4 * ndim
    if len(data) < header:
        raise AccelsimError(
            f"{path}: truncated IDX file ({len(data)} bytes, header needs {header})"
        )
    magic = int.from_bytes(data[:4], "big")
    want = 0x0800 | ndim
    if magic != want:
        raise AccelsimError(f"{path}: bad IDX magic 0x{magic:08x}, expected 0x{want:08x}")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if count is not None and dims[0] != count:
        raise AccelsimError(f"{path}: IDX header says {dims[0]} items, expected {count}")
    if ndim == 3 and dims[1:] != [28, 28]:
        raise AccelsimError(f"{path}: IDX images are {dims[1]}x{dims[2]}, expected 28x28")
    body = int(np.prod(dims))
    if len(data) != header + body:
        raise AccelsimError(
            f"{path}: IDX data is {len(data) - header} bytes, header dims {dims} need {body}"
            f" ({'truncated' if len(data) < header + body else 'trailing bytes'})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_mnist_file(
    ds_dir: Path, base: str, ndim: int, count: int | None, verify: bool
) -> np.ndarray:
    path = _locate("mnist", ds_dir, (base + ".gz", base), "IDX")
    name = path.name
    data = _read(path, MNIST_SIZE[name] if verify else None, MNIST_MD5[name] if verify else None)
    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise AccelsimError(f"{path}: not a valid gzip file ({exc})") from None
    return _parse_idx(path, data, ndim, count)


def load_mnist(
    split: str, data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> ImageSet:
    """MNIST train (60,000) or test (10,000) images as uint8 (N, 1, 28, 28).

    Reads `<name>-idx?-ubyte.gz` or the uncompressed file. verify=False skips the size and md5
    checks (for non-official IDX files); the IDX structure is always checked.
    """
    split = _split_name(split)
    ds_dir = find_dataset_dir("mnist", data_dir)
    img_base, lbl_base, count = MNIST_FILES[split]
    want = count if verify else None
    images = _read_mnist_file(ds_dir, img_base, 3, want, verify)
    labels = _read_mnist_file(ds_dir, lbl_base, 1, want, verify)
    if images.shape[0] != labels.shape[0]:
        raise AccelsimError(
            f"{ds_dir}: {img_base} holds {images.shape[0]} images but {lbl_base} "
            f"{labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise AccelsimError(f"{ds_dir / lbl_base}: label {int(labels.max())} out of range 0..9")
    n = images.shape[0]
    total = OFFICIAL_SIZE[("mnist", split)]
    which = "training" if split == "train" else "test"
    note = f"{split}: all {n} official {which} images" if n == total else (
        f"{split}: {n} of the {total} official {which} images")
    return ImageSet(
        images=torch.from_numpy(images.reshape(n, 1, 28, 28).copy()),
        labels=torch.from_numpy(labels.astype(np.int64)),
        name="mnist", split=split, note=note,
        indices=torch.arange(n, dtype=torch.int64), classes=MNIST_CLASSES,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (binary version).


def _read_cifar_file(path: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    name = path.name
    known = name in CIFAR_MD5 and verify
    data = _read(path, CIFAR_SIZE[name] if known else None, CIFAR_MD5[name] if known else None)
    if len(data) == 0 or len(data) % CIFAR_RECORD:
        raise AccelsimError(
            f"{path}: {len(data)} bytes is not a whole number of {CIFAR_RECORD}-byte "
            f"CIFAR-10 records"
        )
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0]
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise AccelsimError(f"{path}: record {bad} has label {int(labels[bad])}, expected 0..9")
    return rec[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(
    split: str, data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> ImageSet:
    """CIFAR-10 train (50,000) or test images as uint8 (N, 3, 32, 32), in official order.

    When the official test_batch.bin is absent but test_batch_first1000.bin is present, warns
    once per process and returns those 1,000 test images (`note` and `indices` say so).
    """
    split = _split_name(split)
    ds_dir = find_dataset_dir("cifar10", data_dir)
    if split == "train":
        paths = [_locate("cifar10", ds_dir, (f,), "training batch") for f in CIFAR_TRAIN_FILES]
    else:
        paths = [_locate("cifar10", ds_dir, (CIFAR_TEST_FILE, CIFAR_TEST_PARTIAL), "test batch")]
    parts = [_read_cifar_file(p, verify) for p in paths]
    images = np.concatenate([im for im, _ in parts]) if len(parts) > 1 else parts[0][0].copy()
    labels = np.concatenate([lb for _, lb in parts]).astype(np.int64)
    n = images.shape[0]
    total = OFFICIAL_SIZE[("cifar10", split)]
    which = "training" if split == "train" else "test"
    if n == total:
        note = f"{split}: all {n} official {which} images"
    else:
        note = f"{split}: {n} of the {total} official {which} images (from {paths[0].name})"
    if split == "test" and paths[0].name != CIFAR_TEST_FILE:
        key = str(paths[0].resolve())
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(
                f"CIFAR-10: the official {CIFAR_TEST_FILE} is absent from {ds_dir}; evaluation "
                f"uses the {n} test images that exist ({paths[0]}), not the full {total}",
                IncompleteTestSetWarning,
                stacklevel=2,
            )
    return ImageSet(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        name="cifar10", split=split, note=note,
        indices=torch.arange(n, dtype=torch.int64), classes=CIFAR10_CLASSES,
    )  # fmt: skip


def load_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None, *,
                 verify: bool = True) -> ImageSet:  # fmt: skip
    """Either data set by name: "mnist" or "cifar10"."""
    name = _dataset_name(name)
    loader = load_mnist if name == "mnist" else load_cifar10
    return loader(split, data_dir, verify=verify)


# ---------------------------------------------------------------------------------------------
# Splits and batches.


def train_val_split(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (by seed) disjoint split of positions 0..n-1 of a TRAINING set into
    (train_idx, val_idx), both sorted int64; the test set stays untouched for the final number."""
    if n < 0 or not 0 <= val_size <= n:
        raise AccelsimError(
            f"validation size {val_size} must be between 0 and the {n} training images"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def make_batches(
    image_set: ImageSet,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    transform: Transform | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x float32 (B, C, H, W), y int64 (B,)) batches, built with whole-batch tensor ops
    in this process (no workers: fastest on a couple of cores).

    transform(x_uint8, generator) -> float32; default: pixels scaled to [0, 1], so zero pixels
    stay zero (a mean/std normalisation, which moves them, is opt-in: pass one as transform).
    One torch.Generator seeded by `seed` drives both the shuffle and the transform, so the same
    seed gives the same batches; pass seed + epoch for a new order each epoch.
    """
    if batch_size < 1:
        raise AccelsimError(f"batch size must be >= 1, got {batch_size}")
    if transform is None:
        transform = scale_to_unit

    g = torch.Generator().manual_seed(int(seed))
    n = len(image_set)
    order = torch.randperm(n, generator=g) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            x = image_set.images[start : start + batch_size]
            y = image_set.labels[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            x, y = image_set.images[idx], image_set.labels[idx]
        yield transform(x, g), y
