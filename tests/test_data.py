"""Real-data loaders and batch transforms (accelsim.models.data, accelsim.models.transforms).

The data is found the way users find it (--data-dir, $ACCELSIM_DATA, ./data, ../shared/data
relative to the working directory and the repository root); the expected counts are the ones
published in the data README.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from accelsim.errors import AccelsimError
from accelsim.models import data as D
from accelsim.models import transforms as T

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_BATCH1_COUNTS = [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
CIFAR_TEST1000_COUNTS = [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]


@pytest.fixture(scope="module")
def mnist_train(mnist_dir):
    return D.load_mnist("train")


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    return D.load_mnist("test")


@pytest.fixture(scope="module")
def cifar_train(cifar_dir):
    return D.load_cifar10("train")


def _cifar_file(cifar_dir: Path, name: str) -> Path:
    for d in (cifar_dir, cifar_dir / "cifar-10-batches-bin"):
        if (d / name).is_file():
            return d / name
    pytest.skip(f"{name} not in {cifar_dir}")


def _link_mnist(src: Path, dst: Path, names=None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names or [n for n in D.MNIST_MD5 if n.endswith(".gz")]:
        os.symlink(src / name, dst / name)
    return dst


# ----------------------------------------------------------------------------- real data


def test_mnist_test_set(mnist_test):
    s = mnist_test
    assert len(s) == 10000 and s.is_complete
    assert s.images.shape == (10000, 1, 28, 28) and s.images.dtype == torch.uint8
    assert s.labels.dtype == torch.int64
    assert s.class_counts() == MNIST_TEST_COUNTS
    assert torch.equal(s.indices, torch.arange(10000))
    assert s.note == "test: all 10000 official test images"


def test_mnist_train_set_and_normalisation_constants(mnist_train):
    s = mnist_train
    assert len(s) == 60000 and s.images.shape[1:] == (1, 28, 28)
    assert s.class_counts() == MNIST_TRAIN_COUNTS
    x = s.images.to(torch.float64) / 255
    assert x.mean().item() == pytest.approx(T.MNIST_MEAN[0], abs=1e-4)
    assert x.std().item() == pytest.approx(T.MNIST_STD[0], abs=1e-4)
    z = T.to_float_normalized(s.images[:20000], T.MNIST_MEAN, T.MNIST_STD)
    assert z.dtype == torch.float32
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01


def test_cifar_train_set(cifar_train):
    s = cifar_train
    assert len(s) == 50000 and s.is_complete
    assert s.images.shape == (50000, 3, 32, 32) and s.images.dtype == torch.uint8
    assert s.class_counts() == [5000] * 10
    # official order: the first 10,000 records are data_batch_1
    assert torch.bincount(s.labels[:10000], minlength=10).tolist() == CIFAR_BATCH1_COUNTS
    assert s.classes[0] == "airplane" and s.classes[9] == "truck"
    x = s.images.to(torch.float64) / 255
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    assert mean.tolist() == pytest.approx(list(T.CIFAR10_MEAN), abs=1e-4)
    assert std.tolist() == pytest.approx(list(T.CIFAR10_STD), abs=1e-4)


def test_cifar_partial_test_set_warns_exactly_once(cifar_dir, monkeypatch):
    monkeypatch.setattr(D, "_WARNED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = D.load_cifar10("test")
        s2 = D.load_dataset("cifar10", "test")
    ours = [w for w in caught if issubclass(w.category, D.IncompleteTestSetWarning)]
    if (cifar_dir / "test_batch.bin").exists() or (
        cifar_dir / "cifar-10-batches-bin" / "test_batch.bin"
    ).exists():
        assert len(s) == 10000 and not ours
        return
    assert len(ours) == 1
    msg = str(ours[0].message)
    assert "test_batch.bin is absent" in msg and "1000 test images" in msg
    assert len(s) == len(s2) == 1000 and not s.is_complete
    assert s.class_counts() == CIFAR_TEST1000_COUNTS
    assert s.note.startswith("test: 1000 of the 10000 official test images")
    assert torch.equal(s.indices, torch.arange(1000))


# ----------------------------------------------------------------------------- verification


def test_corrupt_mnist_file_is_named(mnist_dir, tmp_path):
    D.clear_checksum_cache()
    dst = _link_mnist(mnist_dir, tmp_path / "mnist", ["t10k-images-idx3-ubyte.gz"])
    bad = dst / "t10k-labels-idx1-ubyte.gz"
    shutil.copyfile(mnist_dir / bad.name, bad)
    raw = bytearray(bad.read_bytes())
    raw[100] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(AccelsimError, match="md5 checksum mismatch") as err:
        D.load_mnist("test", tmp_path)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_corrupt_cifar_file_is_named(cifar_dir, tmp_path):
    src = _cifar_file(cifar_dir, D.CIFAR_TEST_PARTIAL)
    bad = tmp_path / D.CIFAR_TEST_PARTIAL
    shutil.copyfile(src, bad)
    raw = bytearray(bad.read_bytes())
    raw[5000] ^= 0x01
    bad.write_bytes(bytes(raw))
    with pytest.raises(AccelsimError, match="md5 checksum mismatch") as err:
        D.load_cifar10("test", tmp_path)
    assert str(bad) in str(err.value)
    # truncated: caught by the size check before hashing
    bad.write_bytes(bytes(raw[: 3073 * 10 + 7]))
    with pytest.raises(AccelsimError, match=r"30737 bytes, expected 3073000"):
        D.load_cifar10("test", tmp_path)
    # unverified, a partial record is still refused
    with pytest.raises(AccelsimError, match="not a whole number of 3073-byte"):
        D.load_cifar10("test", tmp_path, verify=False)


def test_raw_idx_files_verified_with_raw_md5(mnist_dir, tmp_path):
    dst = tmp_path / "mnist"
    dst.mkdir()
    for base in D.MNIST_FILES["test"][:2]:
        (dst / base).write_bytes(gzip.decompress((mnist_dir / (base + ".gz")).read_bytes()))
    s = D.load_mnist("test", tmp_path)
    assert s.class_counts() == MNIST_TEST_COUNTS
    lbl = dst / "t10k-labels-idx1-ubyte"
    raw = bytearray(lbl.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10
    lbl.write_bytes(bytes(raw))
    D.clear_checksum_cache()
    with pytest.raises(AccelsimError, match=re.escape(f"{lbl}: md5 checksum mismatch")):
        D.load_mnist("test", tmp_path)


def test_idx_parsing_is_strict_without_checksums(mnist_dir, tmp_path):
    imgs = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    lbls = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    img_path, lbl_path = tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"
    lbl_path.write_bytes(lbls)
    img_path.write_bytes(imgs[:-784])  # one image short
    short = re.escape(f"{img_path}: IDX data is 7839216 bytes") + ".*truncated"
    with pytest.raises(AccelsimError, match=short):
        D.load_mnist("test", tmp_path, verify=False)
    img_path.write_bytes(b"\x00\x00\x08\x01" + imgs[4:])  # labels magic on an image file
    with pytest.raises(AccelsimError, match="bad IDX magic 0x00000801, expected 0x00000803"):
        D.load_mnist("test", tmp_path, verify=False)
    img_path.write_bytes(imgs[:10])
    with pytest.raises(AccelsimError, match="truncated IDX file"):
        D.load_mnist("test", tmp_path, verify=False)
    # a consistent smaller IDX pair loads when unverified, and says it is partial
    n = 50
    img_path.write_bytes(imgs[:4] + n.to_bytes(4, "big") + imgs[8:16] + imgs[16 : 16 + 784 * n])
    lbl_path.write_bytes(lbls[:4] + n.to_bytes(4, "big") + lbls[8 : 8 + n])
    s = D.load_mnist("test", tmp_path, verify=False)
    assert len(s) == n and s.note == "test: 50 of the 10000 official test images"
    lbl_path.write_bytes(lbls[:4] + (n - 1).to_bytes(4, "big") + lbls[8 : 8 + n - 1])
    with pytest.raises(AccelsimError, match="holds 50 images but t10k-labels-idx1-ubyte 49 labels"):
        D.load_mnist("test", tmp_path, verify=False)


def test_checksum_verified_once_per_file(mnist_dir, tmp_path, monkeypatch):
    D.clear_checksum_cache()
    dst = _link_mnist(mnist_dir, tmp_path)
    D.load_mnist("test", dst)

    def boom(*a, **k):
        raise AssertionError("md5 recomputed for an unchanged file")

    monkeypatch.setattr(D.hashlib, "md5", boom)
    assert len(D.load_mnist("test", dst)) == 10000


# ----------------------------------------------------------------------------- finding data


def test_missing_dir_lists_every_place_looked(tmp_path, monkeypatch):
    nowhere = tmp_path / "nope"
    with pytest.raises(AccelsimError) as err:
        D.load_mnist("test", nowhere)
    msg = str(err.value)
    assert str(nowhere) in msg and "--data-dir" in msg and "mnist/" in msg
    # default search: with neither cwd nor the repository root near any data
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    cwd, repo = tmp_path / "a" / "b" / "cwd", tmp_path / "x" / "y" / "repo"
    cwd.mkdir(parents=True)
    repo.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(D, "REPO_ROOT", repo)
    with pytest.raises(AccelsimError) as err:
        D.find_dataset_dir("cifar10")
    msg = str(err.value)
    for base in (cwd, repo):
        for rel in ("data", "../shared/data", "../../shared/data"):
            assert str((base / rel).resolve()) in msg
    assert "cifar10/" in msg and "ACCELSIM_DATA" in msg and "\n" not in msg


def test_missing_file_in_found_dir_is_named(mnist_dir, tmp_path):
    _link_mnist(mnist_dir, tmp_path / "mnist", ["train-labels-idx1-ubyte.gz"])
    with pytest.raises(AccelsimError) as err:
        D.load_mnist("test", tmp_path)
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz or t10k-images-idx3-ubyte not found" in msg
    assert str(tmp_path / "mnist") in msg


def test_env_var_explicit_dir_and_cwd(mnist_dir, tmp_path, monkeypatch):
    env_root, arg_root = tmp_path / "env", tmp_path / "arg"
    _link_mnist(mnist_dir, env_root / "mnist")
    _link_mnist(mnist_dir, arg_root)  # files directly in the root
    monkeypatch.setenv(D.ENV_VAR, str(env_root))
    assert D.find_dataset_dir("mnist") == env_root / "mnist"
    assert D.find_dataset_dir("mnist", arg_root) == arg_root  # explicit beats env
    assert D.load_mnist("test").class_counts() == MNIST_TEST_COUNTS
    # a wrong env var fails instead of falling back to another copy
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(AccelsimError, match=r"from \$ACCELSIM_DATA"):
        D.find_dataset_dir("mnist")
    # no env var: ./data relative to the working directory comes first
    monkeypatch.delenv(D.ENV_VAR)
    cwd = tmp_path / "work"
    _link_mnist(mnist_dir, cwd / "data" / "mnist")
    monkeypatch.chdir(cwd)
    assert D.find_dataset_dir("mnist") == (cwd / "data" / "mnist").resolve()


def test_cifar_official_layout_under_explicit_dir(cifar_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_WARNED", set())
    bins = tmp_path / "cifar-10-batches-bin"
    bins.mkdir()
    os.symlink(_cifar_file(cifar_dir, "data_batch_1.bin"), bins / "data_batch_1.bin")
    os.symlink(_cifar_file(cifar_dir, D.CIFAR_TEST_PARTIAL), tmp_path / D.CIFAR_TEST_PARTIAL)
    assert D.find_dataset_dir("cifar10", tmp_path) == tmp_path
    with pytest.warns(D.IncompleteTestSetWarning):
        assert len(D.load_cifar10("test", tmp_path)) == 1000
    with pytest.raises(AccelsimError, match=r"training batch file data_batch_2.bin not found"):
        D.load_cifar10("train", tmp_path)


def test_bad_names():
    with pytest.raises(AccelsimError, match="unknown data set 'imagenet'"):
        D.load_dataset("imagenet", "train")
    with pytest.raises(AccelsimError, match="unknown split 'val'"):
        D.load_mnist("val")


# ----------------------------------------------------------------------------- splits, batches


def test_train_val_split_deterministic_and_disjoint():
    tr, va = D.train_val_split(1000, 100, seed=3)
    tr2, va2 = D.train_val_split(1000, 100, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert len(tr) == 900 and len(va) == 100
    assert torch.equal(torch.cat([tr, va]).sort().values, torch.arange(1000))
    assert not torch.equal(D.train_val_split(1000, 100, seed=4)[1], va)
    with pytest.raises(AccelsimError, match="validation size 1001"):
        D.train_val_split(1000, 1001, seed=0)


def test_subset_and_batches(mnist_test):
    tr, va = D.train_val_split(len(mnist_test), 1000, seed=0)
    sub = mnist_test.subset(va)
    assert len(sub) == 1000 and torch.equal(sub.indices, va)
    assert torch.equal(sub.labels, mnist_test.labels[va]) and "subset of 1000" in sub.note
    batches = list(D.make_batches(sub, 256, shuffle=True, seed=7))
    assert [len(y) for _, y in batches] == [256, 256, 256, 232]
    x0, _ = batches[0]
    assert x0.dtype == torch.float32 and x0.shape == (256, 1, 28, 28)
    ys = torch.cat([y for _, y in batches])
    assert torch.equal(ys.sort().values, sub.labels.sort().values)  # each sample once
    again = list(D.make_batches(sub, 256, shuffle=True, seed=7))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    other = next(iter(D.make_batches(sub, 256, shuffle=True, seed=8)))
    assert not torch.equal(other[1], batches[0][1])
    plain = list(D.make_batches(sub, 256, drop_last=True))
    assert len(plain) == 3 and torch.equal(plain[0][1], sub.labels[:256])
    # the default keeps zero pixels zero: the input density a zero-skipping array sees
    assert torch.equal(plain[0][0], sub.images[:256].float() / 255)
    assert torch.equal(plain[0][0] == 0, sub.images[:256] == 0)


# ----------------------------------------------------------------------------- transforms


def _batch(n=16, c=3, h=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, h), generator=g, dtype=torch.uint8)


def test_random_crop_matches_per_sample_reference():
    x = _batch()
    out = T.random_crop(x, 32, 4, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    g = torch.Generator().manual_seed(1)
    top = torch.randint(0, 9, (16,), generator=g)
    left = torch.randint(0, 9, (16,), generator=g)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for b in range(16):
        t, l = int(top[b]), int(left[b])
        assert torch.equal(out[b], padded[b, :, t : t + 32, l : l + 32])
    assert len({(int(a), int(b)) for a, b in zip(top, left)}) > 1  # offsets differ per sample
    assert torch.equal(out, T.random_crop(x, 32, 4, torch.Generator().manual_seed(1)))
    assert torch.equal(T.random_crop(x, 32, 0, torch.Generator().manual_seed(5)), x)


def test_crops_and_flip():
    x = _batch()
    c = T.random_crop_no_pad(x, 24, torch.Generator().manual_seed(2))
    assert c.shape == (16, 3, 24, 24)
    assert torch.equal(c, T.random_crop_no_pad(x, 24, torch.Generator().manual_seed(2)))
    for b in range(16):  # every crop is a window of its own image
        windows = x[b].unfold(1, 24, 1).unfold(2, 24, 1)  # (3, 9, 9, 24, 24)
        assert (windows == c[b][:, None, None]).flatten(3).all(-1).all(0).any()
    assert torch.equal(T.center_crop(x, 24), x[:, :, 4:28, 4:28])
    f = T.random_flip(x, torch.Generator().manual_seed(3))
    flipped = [torch.equal(f[b], x[b].flip(2)) for b in range(16)]
    kept = [torch.equal(f[b], x[b]) for b in range(16)]
    assert all(a or b for a, b in zip(flipped, kept)) and 0 < sum(flipped) < 16
    assert torch.equal(f, T.random_flip(x, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="crop 40 does not fit"):
        T.random_crop(x, 40, 2)


def test_standard_transforms():
    x = _batch()
    tr = T.standard_transform("cifar10", train=True, normalize=True)
    a = tr(x, torch.Generator().manual_seed(0))
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, tr(x, torch.Generator().manual_seed(0)))
    small = T.standard_transform("cifar10", train=True, crop_size=24)(x, torch.Generator())
    assert small.shape == (16, 3, 24, 24)
    ev = T.standard_transform("cifar10", train=False, crop_size=24, normalize=True)(x, None)
    expect = T.to_float_normalized(x[:, :, 4:28, 4:28], T.CIFAR10_MEAN, T.CIFAR10_STD)
    assert torch.equal(ev, expect)
    plain = T.standard_transform("cifar10", train=False, crop_size=24)(x, None)
    assert torch.equal(plain, x[:, :, 4:28, 4:28].float() / 255)  # the default: no normalisation
    with pytest.raises(ValueError, match="expected uint8"):
        T.to_float_normalized(x.float(), T.CIFAR10_MEAN, T.CIFAR10_STD)


def test_mnist_standard_transform_keeps_background_zero():
    """A zero-skipping array must see MNIST's background as zeros: scale to [0, 1] only."""
    x = torch.tensor([[[[0, 255], [51, 0]]]], dtype=torch.uint8)
    out = T.standard_transform("mnist", train=True)(x, None)
    assert torch.equal(out, torch.tensor([[[[0.0, 1.0], [0.2, 0.0]]]]))


@pytest.mark.parametrize("model", ["lenet4", "convnet5"])
def test_a_trace_says_when_its_inputs_were_normalised(model, tmp_path, request):
    """MNIST inputs keep their zeros; the CIFAR-10 recipe's opt-in normalisation moves them and
    the trace metadata carries a warning that `trace info` prints."""
    request.getfixturevalue("mnist_dir" if model == "lenet4" else "cifar_dir")
    from accelsim.models import zoo
    from accelsim.models.checkpoint import save_checkpoint
    from accelsim.models.record import record_checkpoint
    from accelsim.models.train import input_normalization
    from accelsim.traces import open_trace

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ck", zoo.build(model), {
        "model": model, "model_kwargs": {}, "method": "dense",
        "input_normalization": input_normalization(model)})
    out = tmp_path / "t.trace.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.IncompleteTestSetWarning)
        record_checkpoint(tmp_path / "ck", 2, out, command=["test"])
    trace = open_trace(out)
    first = trace.layer(0).inputs
    if model == "lenet4":
        assert "warnings" not in trace.meta
        assert first.density_per_sample().max() < 0.5  # the background stays zero
    else:
        assert len(trace.meta["warnings"]) == 1 and "zero pixels" in trace.meta["warnings"][0]
        assert first.density_per_sample().min() > 0.99
        from click.testing import CliRunner

        from accelsim.traces.cli import trace as trace_group

        shown = CliRunner().invoke(trace_group, ["info", str(out)]).output
        assert "warning: inputs normalised with mean" in shown
