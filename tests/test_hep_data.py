"""Synthetic HEP events in the HEP-CNN HDF5 layout: generation, files, checks, sharding, physics."""

import itertools
from pathlib import Path

import h5py
import numpy as np
import pytest

from ai500.data import common, hep
from ai500.errors import DataError
from ai500.metrics.quality import roc_auc

S = 16  # small images keep the tests fast


def write(path: Path, arrays: dict) -> Path:
    with h5py.File(path, "w") as f:
        for key, values in arrays.items():
            f.create_dataset(key, data=values)
    return path


def valid_arrays(n: int = 6, size: int = S) -> dict:
    return {"data": np.zeros((n, 3, size, size), np.float32), "label": np.zeros(n, np.float32),
            "weight": np.ones(n, np.float32), "normweight": np.ones(n, np.float32)}


def test_written_file_layout(tmp_path):
    path = tmp_path / "train.h5"
    hep.write_split(path, 37, seed=3, image_size=S, chunk_events=10)
    assert not (tmp_path / "train.h5.tmp").exists()
    expected = hep.generate_events(0, 37, 3, S)
    with h5py.File(path, "r") as f:
        assert set(hep.KEYS) <= set(f)
        assert f["data"].shape == (37, 3, S, S) and f["data"].dtype == np.float32
        assert f["data"].chunks[1:] == (3, S, S)
        for key in hep.KEYS[1:]:
            assert f[key].shape == (37,) and f[key].dtype == np.float32
        np.testing.assert_array_equal(f["data"][:], expected["data"])
        np.testing.assert_array_equal(f["label"][:], expected["label"])
        np.testing.assert_array_equal(f["weight"][:], expected["weight"])
        label, normweight = f["label"][:], f["normweight"][:]
    for cls in (0, 1):
        assert normweight[label == cls].mean() == pytest.approx(1.0, rel=1e-5)


def test_uncompressed_files_hold_the_same_events(tmp_path):
    """compression=None writes raw one-event chunks; a reader gets the gzip file's events."""
    hep.write_split(tmp_path / "gzip.h5", 12, seed=3, image_size=S)
    hep.write_split(tmp_path / "raw.h5", 12, seed=3, image_size=S, compression=None)
    with h5py.File(tmp_path / "gzip.h5", "r") as packed, h5py.File(tmp_path / "raw.h5", "r") as raw:
        assert packed["data"].compression == "gzip" and raw["data"].compression is None
        assert raw["data"].chunks == (1, 3, S, S)
        np.testing.assert_array_equal(raw["data"][:], packed["data"][:])
    with pytest.raises(ValueError, match="compression must be 'gzip' or None"):
        hep.write_split(tmp_path / "lzf.h5", 12, seed=3, image_size=S, compression="lzf")


def test_generation_is_deterministic_and_blockwise():
    a = hep.generate_events(5, 20, seed=7, image_size=S)
    b = hep.generate_events(5, 20, seed=7, image_size=S)
    big = hep.generate_events(0, 40, seed=7, image_size=S)
    for key in ("data", "label", "weight"):
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a[key], big[key][5:25])
    np.testing.assert_array_equal(a["normweight"], b["normweight"])
    assert not np.array_equal(a["data"], hep.generate_events(5, 20, seed=8, image_size=S)["data"])


def test_channels_normalised_and_labels_balanced():
    d = hep.generate_events(3, 64, seed=1, image_size=32)
    assert d["data"].shape == (64, 3, 32, 32) and d["data"].dtype == np.float32
    assert d["data"].min() >= 0.0
    np.testing.assert_allclose(d["data"].max(axis=(2, 3)), 1.0)  # each channel peaks at 1 in every event
    assert set(np.unique(d["label"])) == {0.0, 1.0}
    assert d["label"].sum() == 32
    assert d["label"][:7].sum() in (3, 4)  # any contiguous run is balanced
    for cls in (0, 1):
        assert d["normweight"][d["label"] == cls].mean() == pytest.approx(1.0, rel=1e-5)
    assert np.all(d["weight"] > 0)


@pytest.mark.parametrize("total,size", [(10, 1), (10, 3), (7, 7), (100, 8), (1001, 16), (5, 4)])
def test_shards_partition(total, size):
    shards = [hep.shard_range(total, r, size, equal=False) for r in range(size)]
    assert shards[0][0] == 0 and shards[-1][1] == total
    assert all(a[1] == b[0] for a, b in itertools.pairwise(shards))
    lengths = [stop - start for start, stop in shards]
    assert max(lengths) - min(lengths) <= 1
    equal = [hep.shard_range(total, r, size, equal=True) for r in range(size)]
    assert {stop - start for start, stop in equal} == {total // size}
    assert all(a[1] == b[0] for a, b in itertools.pairwise(equal)) and equal[0][0] == 0


def test_shard_errors():
    with pytest.raises(DataError):
        hep.shard_range(3, 0, 4, equal=True)
    with pytest.raises(DataError):
        hep.shard_range(3, 3, 4, equal=False)
    with pytest.raises(ValueError):
        hep.shard_range(10, 2, 2, equal=False)


def test_load_range_across_two_files(tmp_path):
    hep.write_split(tmp_path / "train-0.h5", 12, seed=4, image_size=S)
    write(tmp_path / "train-1.h5", hep.generate_events(12, 9, seed=4, image_size=S))
    files = hep.split_files(tmp_path, "train")
    assert [p.name for p in files] == ["train-0.h5", "train-1.h5"]
    counts = hep.inspect_files(files, image_size=S)
    assert counts == [12, 9]
    expected = hep.generate_events(0, 21, seed=4, image_size=S)
    got = hep.load_range(files, counts, 5, 17)
    assert got["data"].shape == (12, S, S, 3) and got["data"].dtype == np.float32
    np.testing.assert_array_equal(got["data"], expected["data"][5:17].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(got["label"], expected["label"][5:17])
    np.testing.assert_array_equal(got["weight"], expected["weight"][5:17])
    assert hep.load_range(files, counts, 14, 16)["label"].shape == (2,)  # second file only
    with pytest.raises(ValueError):
        hep.load_range(files, counts, 10, 22)


def test_generate_dataset_disjoint_and_no_overwrite(tmp_path):
    paths = hep.generate_dataset(tmp_path / "hep", n_train=8, n_val=6, seed=2, image_size=S)
    assert [p.name for p in paths] == ["train.h5", "val.h5"]
    assert hep.inspect_files(paths, S) == [8, 6]
    assert hep.split_files(tmp_path / "hep", "val") == [paths[1]]
    with h5py.File(paths[0], "r") as train, h5py.File(paths[1], "r") as val:
        assert not np.array_equal(train["data"][:6], val["data"][:])
        np.testing.assert_array_equal(
            val["data"][:], hep.generate_events(0, 6, common.split_seed(2, "val"), S)["data"])
    assert common.split_seed(2, "train") == 2 and common.split_seed(2, "val") != 2
    with pytest.raises(DataError, match="train.h5"):
        hep.generate_dataset(tmp_path / "hep", n_train=8, n_val=6, seed=2, image_size=S)


def test_split_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        hep.split_files(tmp_path / "missing", "train")
    with pytest.raises(DataError, match="no train"):
        hep.split_files(tmp_path, "train")
    for name in ("validation-b.h5", "valid-a.h5", "train.h5", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in hep.split_files(tmp_path, "val")] == ["valid-a.h5", "validation-b.h5"]
    assert [p.name for p in hep.split_files(tmp_path, "train")] == ["train.h5"]


@pytest.mark.parametrize("change,message", [
    (lambda a: a.pop("normweight"), "missing dataset.*normweight"),
    (lambda a: a.update(data=np.zeros((6, 3, S, 8), np.float32)), "data has shape"),
    (lambda a: a.update(data=np.zeros((6, 2, S, S), np.float32)), "data has shape"),
    (lambda a: a.update(data=np.zeros((6, 3 * S * S), np.float32)), "data has shape"),
    (lambda a: a.update(data=np.zeros((6, 3, 8, 8), np.float32)), "expected 16x16"),
    (lambda a: a.update(label=np.zeros(5, np.float32)), "label has shape"),
])
def test_inspect_rejects_bad_layout(tmp_path, change, message):
    arrays = valid_arrays()
    change(arrays)
    path = write(tmp_path / "train.h5", arrays)
    with pytest.raises(DataError, match=message) as info:
        hep.inspect_files([path], image_size=S)
    assert str(path) in str(info.value)


def test_inspect_rejects_unreadable_files(tmp_path):
    good = tmp_path / "train.h5"
    hep.write_split(good, 40, seed=1, image_size=S)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "text.h5"
    text.write_text("not an HDF5 file\n")
    for path in (truncated, text, tmp_path / "missing.h5"):
        with pytest.raises(DataError, match=path.name):
            hep.inspect_files([good, path])
    with pytest.raises(DataError, match="truncated.h5"):
        hep.load_range([truncated], [40], 0, 10)
    assert hep.inspect_files([good]) == [40]


def test_inspect_rejects_mixed_image_sizes(tmp_path):
    a = write(tmp_path / "train-a.h5", valid_arrays(size=S))
    b = write(tmp_path / "train-b.h5", valid_arrays(size=8))
    with pytest.raises(DataError, match="train-b.h5"):
        hep.inspect_files([a, b])


def test_load_range_rejects_non_finite(tmp_path):
    arrays = valid_arrays()
    arrays["data"][4, 1, 2, 3] = np.nan
    path = write(tmp_path / "train.h5", arrays)
    assert hep.load_range([path], [6], 0, 4)["data"].shape == (4, S, S, 3)  # rows before the NaN are fine
    with pytest.raises(DataError, match="train.h5.*non-finite"):
        hep.load_range([path], [6], 2, 6)


def test_total_energy_does_not_separate_signal_from_background():
    # The background is drawn with the signal's total-ET distribution: a cut on the total transverse
    # energy seen in the calorimeter (GeV, within |eta| < 2.5) is weak (measured AUC 0.53 here).
    n = 3000
    raw = hep._simulate(0, n, seed=11, image_size=64)
    total_et = np.bincount(raw["event"], raw["et"], n)
    assert 0.25 < roc_auc(total_et, raw["label"]) < 0.75
    assert abs(np.median(total_et) - hep.TOTAL_ET_MEAN) < 300.0
    # Sums of the normalised channels (about the number of occupied cells and tracks) carry some of the
    # jet multiplicity, but are no shortcut (measured AUC 0.72-0.73 here).
    data = hep.generate_events(0, n, seed=11, image_size=64)["data"]
    for c in range(3):
        assert 0.2 < roc_auc(data[:, c].sum(axis=(1, 2)), raw["label"]) < 0.8


def test_an_empty_shard_only_where_allowed():
    from ai500.data import common

    assert common.shard_range(1, 1, 2, equal=False, allow_empty=True) == (1, 1)
    with pytest.raises(DataError):
        common.shard_range(1, 1, 2, equal=False)


def test_channels_last_generation_is_the_transposed_layout():
    first = hep.generate_events(3, 6, seed=2, image_size=S)
    last = hep.generate_events(3, 6, seed=2, image_size=S, channels_last=True)
    assert last["data"].shape == (6, S, S, 3) and last["data"].flags.c_contiguous
    np.testing.assert_array_equal(last["data"], first["data"].transpose(0, 2, 3, 1))
    for key in hep.KEYS[1:]:
        np.testing.assert_array_equal(last[key], first[key])


def test_generate_writes_raw_or_gzip_chunks_with_the_same_events(tmp_path, capsys):
    from ai500.data.__main__ import main

    for compression in ("gzip", "none"):
        assert main(["generate", "hep", "--preset", "ci", "--train", "6", "--val", "2",
                     "--compression", compression, "--out", str(tmp_path / compression)]) == 0
    with h5py.File(tmp_path / "gzip" / "train.h5") as g, h5py.File(tmp_path / "none" / "train.h5") as r:
        assert g["data"].compression == "gzip" and r["data"].compression is None
        assert np.array_equal(g["data"][()], r["data"][()])
    assert main(["generate", "cosmo", "--preset", "ci", "--compression", "none",
                 "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--compression applies to hep only; cosmo is written uncompressed")
    assert not (tmp_path / "c").exists()
