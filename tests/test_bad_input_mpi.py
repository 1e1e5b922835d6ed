"""Bad datasets under real `mpirun -np 2` runs, beyond those in test_run_mpi.py and
test_dcgan_run.py: damage that only one rank's shard holds (the others must not hang), labels a
classifier cannot use, and a truncated memory-mapped map file. Each ends every rank with one line,
a non-zero exit and no run directory."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import mpirun

from ai500.data import hep


def _corrupt_chunk(path, first_event: int) -> None:
    """Flip bytes inside the compressed chunk holding `first_event` (inflate then fails)."""
    with h5py.File(path, "r") as f:
        info = f["data"].id.get_chunk_info_by_coord((first_event, 0, 0, 0))
    raw = bytearray(path.read_bytes())
    middle = info.byte_offset + info.size // 2
    raw[middle:middle + 64] = bytes(b ^ 0xFF for b in raw[middle:middle + 64])
    path.write_bytes(bytes(raw))


def _hep(data_dir, case: str) -> None:
    data_dir.mkdir()
    hep.write_split(data_dir / "train.h5", 64, seed=1, image_size=64)
    hep.write_split(data_dir / "val.h5", 32, seed=2, image_size=64)
    if case == "chunk":  # rank 1 reads training events 32..63; rank 0 reads a sound shard
        _corrupt_chunk(data_dir / "train.h5", 50)
    elif case == "label":
        with h5py.File(data_dir / "val.h5", "r+") as f:
            f["label"][20] = 3.0


def _cosmo(data_dir, case: str) -> None:
    data_dir.mkdir()
    np.save(data_dir / "train.npy", np.zeros((64, 32, 32), np.float32))
    np.save(data_dir / "val.npy", np.zeros((16, 32, 32), np.float32))
    raw = (data_dir / "train.npy").read_bytes()
    (data_dir / "train.npy").write_bytes(raw[: len(raw) * 3 // 4])


@pytest.mark.parametrize("benchmark, case, fragment", [
    ("resnet", "chunk", "train.h5: cannot read events 32..64"),
    ("resnet", "label", "val.h5: label of event 20 is 3, expected 0 or 1"),
    ("dcgan", "truncated", "train.npy: not a readable .npy file or truncated"),
])
def test_bad_dataset_ends_every_rank_with_one_line(tmp_path, benchmark, case, fragment):
    data = tmp_path / "data"
    (_hep if benchmark == "resnet" else _cosmo)(data, case)
    out = tmp_path / "runs"
    result = mpirun(2, ["--benchmark", benchmark, "--preset", "ci", "--data", str(data),
                        "--out", str(out)], timeout=240)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ai500: error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())
