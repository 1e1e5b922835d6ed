"""HEP collision events as calorimeter images, in the NERSC HEP-CNN HDF5 layout.

A file holds `data` (N, 3, H, W) float (channels first, H = W, 64 or 224 in the real sets), `label` (N,)
with 1 = signal and 0 = background, `weight` (N,) a physics event weight and `normweight` (N,) the weight
normalised to mean 1 within each class. The channels are calorimeter transverse energy, EM fraction and
track multiplicity, each divided by its maximum over the event.

The synthetic stand-in images the detector in eta-phi: rows are pseudorapidity eta in [-2.5, 2.5) (row 0 at
eta = -2.5), columns azimuth phi in [-pi, pi) (periodic, column 0 at phi = -pi). Energies are in GeV.

- Signal (RPV-SUSY-like gluino pair, each decaying to three quarks): 6 decay quarks plus 0-4 radiated
  gluons, total transverse energy ~ N(2500, 300) GeV shared among them. Weight: a constant cross-section
  per event with 10 % log-normal spread.
- Background (QCD multijet): two hard jets back to back in phi with pT-hat from a falling spectrum
  (dsigma/dpT ~ pT^-5 above 400 GeV), mostly gluon jets, plus a Poisson number (mean 2) of softer
  radiation jets; the event is then rescaled to a total transverse energy drawn from the same
  distribution as the signal's, so total energy does not separate the classes (ROC AUC about 0.53).
  Weight: falls with pT-hat as pT-hat^-1.5.
- Jet multiplicity and topology separate the classes, with overlap: background radiation sometimes
  makes 5-7 jets, signal partons sometimes merge or are soft. Gluon jets hold more (1.3x) and more
  widely spread constituents than quark jets, a weaker second handle.
- Every jet is a shower of constituents (Gaussian around the jet axis, narrower for harder jets): photons
  (all EM), charged hadrons (one track each, partly EM showers) and neutral hadrons. Both classes get
  pile-up: soft particles spread uniformly over the image, 10-80 on average depending on the event.

Since each channel is divided by its own maximum, the images carry shapes, not the absolute energy scale.
Measured difficulty (64x64): the `small` ResNet reaches validation AUC ~0.91 after 3 epochs and ~0.95
after 12 on 16k events; single-number summaries (total energy, occupied cells, track count) reach < 0.75.

Event i depends only on (seed, i), and labels alternate (even i signal), so any shard of any file is
balanced and can be generated or read on its own.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ai500.data import common, stream
from ai500.errors import HDF5_ERRORS, DataError, first_line
from ai500.hdf5 import open_h5

CHANNELS: tuple[str, ...] = ("calorimeter_energy", "em_fraction", "track_multiplicity")
KEYS = ("data", "label", "weight", "normweight")
COMPRESSIONS: dict[str, str | None] = {"gzip": "gzip", "none": None}  # option name -> write_split's

ETA_MAX = 2.5
TOTAL_ET_MEAN = 2500.0  # GeV, both classes
TOTAL_ET_SIGMA = 300.0  # GeV
TOTAL_ET_MIN = 1200.0  # GeV
PT_HAT_MIN = 400.0  # GeV, lower edge of the background's falling spectrum
PT_HAT_POWER = 5.0  # dsigma/dpT ~ pT^-PT_HAT_POWER
RADIATION_JETS = 2.0  # mean number of background radiation jets
EXTRA_SIGNAL_PARTONS = 1.0  # mean number of radiated signal partons beyond the six (at most 4)
PILEUP_PARTICLES = (10.0, 80.0)  # range of the mean number per event (the luminosity varies)
PILEUP_ET = 1.5  # GeV, mean transverse energy of a pile-up particle
PHOTON_P = 0.25  # fraction of jet particles that are photons (from pi0 decays)
CHARGED_P = 0.62  # fraction that are charged hadrons (one track each); the rest are neutral hadrons
GLUON_FRACTION = 0.7  # chance that a hard QCD background jet is a gluon jet (signal decay partons are quarks)
GLUON_MULTIPLICITY = 1.3  # gluon / quark jet constituent multiplicity; gluon jets are sqrt(1.3) x wider


def _partons_signal(rng: np.random.Generator, total_et: float) -> tuple[np.ndarray, ...]:
    """Partons of one signal event: (et GeV, eta, phi, is_gluon)."""
    n_extra = min(4, int(rng.poisson(EXTRA_SIGNAL_PARTONS)))
    axis_phi = rng.uniform(-np.pi, np.pi)
    axes_phi = np.array([axis_phi, axis_phi + np.pi + rng.normal(0.0, 0.6)])
    # three decay quarks per gluino, spread widely around its direction (heavy, slow gluinos)
    eta = np.repeat(rng.normal(0.0, 0.7, 2), 3) + rng.normal(0.0, 0.6, 6)
    phi = np.repeat(axes_phi, 3) + rng.normal(0.0, 0.6, 6)
    et = rng.gamma(2.0, 1.0, 6)
    if n_extra:  # radiated gluons near a decay quark
        parent = rng.integers(0, 6, n_extra)
        dr = rng.uniform(0.4, 1.0, n_extra)
        angle = rng.uniform(0.0, 2.0 * np.pi, n_extra)
        eta = np.concatenate([eta, eta[parent] + dr * np.cos(angle)])
        phi = np.concatenate([phi, phi[parent] + dr * np.sin(angle)])
        et = np.concatenate([et, 0.35 * rng.gamma(3.0, 1.0, n_extra)])
    return et * (total_et / et.sum()), eta, phi, np.arange(et.size) >= 6


def _partons_background(rng: np.random.Generator, total_et: float) -> tuple[tuple[np.ndarray, ...], float]:
    """Partons of one QCD multijet event: ((et GeV, eta, phi, is_gluon), pT-hat GeV before rescaling)."""
    pt_hat = PT_HAT_MIN * (1.0 - rng.random()) ** (-1.0 / (PT_HAT_POWER - 1.0))
    n_rad = int(rng.poisson(RADIATION_JETS))
    phi1 = rng.uniform(-np.pi, np.pi)
    eta = rng.normal(0.0, 1.1, 2)
    phi = np.array([phi1, phi1 + np.pi + rng.normal(0.0, 0.12)])
    et = pt_hat * np.array([1.0, 1.0 - abs(rng.normal(0.0, 0.08))])
    gluon = rng.random(2) < GLUON_FRACTION
    if n_rad:  # final-state radiation near a hard jet, or initial-state radiation anywhere
        z = 0.1 + 0.6 * rng.beta(1.0, 2.0, n_rad)
        final_state = rng.random(n_rad) < 0.65
        parent = rng.integers(0, 2, n_rad)
        dr = rng.uniform(0.5, 1.3, n_rad)
        angle = rng.uniform(0.0, 2.0 * np.pi, n_rad)
        rad_eta = np.where(final_state, eta[parent] + dr * np.cos(angle), rng.normal(0.0, 1.6, n_rad))
        rad_phi = np.where(final_state, phi[parent] + dr * np.sin(angle), rng.uniform(-np.pi, np.pi, n_rad))
        eta, phi = np.concatenate([eta, rad_eta]), np.concatenate([phi, rad_phi])
        et, gluon = np.concatenate([et, z * pt_hat]), np.concatenate([gluon, np.ones(n_rad, bool)])
    return (et * (total_et / et.sum()), eta, phi, gluon), pt_hat


def _shower(rng: np.random.Generator, et: np.ndarray, eta: np.ndarray, phi: np.ndarray,
            gluon: np.ndarray) -> tuple[np.ndarray, ...]:
    """Particles of the jets (et GeV, eta, phi, is_gluon) plus pile-up: (eta, phi, et, em_et, charged).

    Gluon jets have more and wider-spread constituents than quark jets; harder jets are narrower."""
    scale = np.where(gluon, GLUON_MULTIPLICITY, 1.0)
    n_const = 2 + rng.poisson(scale * (2.0 + 2.5 * np.log(np.maximum(et, 10.0) / 10.0)))
    jet = np.repeat(np.arange(et.size), n_const)
    share = rng.gamma(0.6, 1.0, jet.size) + 1e-12
    share /= np.bincount(jet, share, et.size)[jet]
    width = (np.sqrt(scale) * np.minimum(0.3, 0.03 + 1.0 / np.sqrt(np.maximum(et, 1.0))))[jet]
    n_pu = int(rng.poisson(rng.uniform(*PILEUP_PARTICLES)))
    spread = rng.standard_normal((2, jet.size))
    pileup = rng.random((2, n_pu))
    c_et = np.concatenate([share * et[jet], rng.exponential(PILEUP_ET, n_pu)])
    c_eta = np.concatenate([eta[jet] + width * spread[0], ETA_MAX * (2.0 * pileup[0] - 1.0)])
    c_phi = np.concatenate([phi[jet] + width * spread[1], np.pi * (2.0 * pileup[1] - 1.0)])
    u = rng.random((2, c_et.size))
    photon = u[0] < PHOTON_P
    charged = ~photon & (u[0] < PHOTON_P + CHARGED_P)
    # photons deposit all their energy as EM showers, hadrons a random part of it
    em_share = np.where(photon, 1.0, u[1] * np.where(charged, 0.4, 0.3))
    return c_eta, c_phi, c_et, c_et * em_share, charged


def _simulate(first: int, count: int, seed: int, image_size: int) -> dict[str, np.ndarray]:
    """Raw events [first, first+count) as occupied cells: `event` (index in the block), `cell` (row * S +
    column), `et` (GeV), `em` (EM GeV), `tracks` (count) per cell; plus per event `label` and `weight`."""
    if image_size < 8:
        raise ValueError(f"image size must be at least 8, got {image_size}")
    if first < 0 or count < 1 or seed < 0:
        raise ValueError(f"need first >= 0, count >= 1, seed >= 0, got {first}, {count}, {seed}")
    s = image_size
    label = (np.arange(first, first + count) % 2 == 0).astype(np.float32)
    weight = np.empty(count, np.float64)
    particles = []
    for k in range(count):
        rng = np.random.default_rng([seed, first + k])
        total_et = max(TOTAL_ET_MIN, rng.normal(TOTAL_ET_MEAN, TOTAL_ET_SIGMA))
        if label[k]:
            partons = _partons_signal(rng, total_et)
            weight[k] = 0.02 * rng.lognormal(0.0, 0.1)
        else:
            partons, pt_hat = _partons_background(rng, total_et)
            weight[k] = 1.5 * (pt_hat / PT_HAT_MIN) ** -1.5
        particles.append(_shower(rng, *partons))
    eta, phi, et, em, charged = (np.concatenate(column) for column in zip(*particles))
    event = np.repeat(np.arange(count), [p[0].size for p in particles])
    row = np.floor((eta + ETA_MAX) * (s / (2 * ETA_MAX))).astype(np.int64)
    col = np.floor((phi + np.pi) * (s / (2 * np.pi))).astype(np.int64) % s
    inside = (row >= 0) & (row < s)
    key = (event * s + row)[inside] * s + col[inside]
    cells, index = np.unique(key, return_inverse=True)
    return {
        "event": cells // (s * s),
        "cell": cells % (s * s),
        "et": np.bincount(index, et[inside], cells.size),
        "em": np.bincount(index, em[inside], cells.size),
        "tracks": np.bincount(index, charged[inside], cells.size),
        "label": label,
        "weight": weight,
    }


def _normalise_weights(weight: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Weights divided by their class mean, so each class has mean normweight 1."""
    out = np.zeros_like(weight, dtype=np.float64)
    for cls in (0.0, 1.0):
        mask = label == cls
        if mask.any():
            out[mask] = weight[mask] / weight[mask].mean()
    return out.astype(np.float32)


def generate_events(first: int, count: int, seed: int, image_size: int = 64,
                    channels_last: bool = False) -> dict[str, np.ndarray]:
    """Synthetic events [first, first+count) of the set `seed` as S x S images (S = image_size).

    Returns `data` (count, 3, S, S) float32, channels first (the files' layout), or with
    channels_last (count, S, S, 3) written so directly (no transposed copy), each channel divided
    by its maximum over the event; `label` (count,) float32 (1 signal, 0 background); `weight` (count,) float32 physics weight;
    `normweight` (count,) float32, the weight normalised to mean 1 per class within this block.
    """
    raw = _simulate(first, count, seed, image_size)
    event, et = raw["event"], raw["et"]
    channels = np.stack([et, np.divide(raw["em"], et, out=np.zeros_like(et), where=et > 0), raw["tracks"]])
    # per-event maximum of each channel: cells come sorted by event
    present, starts = np.unique(event, return_index=True)
    peak = np.ones((3, count))
    peak[:, present] = np.maximum.reduceat(channels, starts, axis=1)
    peak[peak <= 0] = 1.0
    cells = image_size * image_size
    data = np.zeros((count, cells, 3) if channels_last else (count, 3, cells), np.float32)
    for c in range(3):
        values = channels[c] / peak[c, event]
        if channels_last:
            data[event, raw["cell"], c] = values
        else:
            data[event, c, raw["cell"]] = values
    data = data.reshape((count, image_size, image_size, 3) if channels_last
                        else (count, 3, image_size, image_size))
    return {
        "data": data,
        "label": raw["label"],
        "weight": raw["weight"].astype(np.float32),
        "normweight": _normalise_weights(raw["weight"], raw["label"]),
    }


def write_split(path: Path, count: int, seed: int, image_size: int, chunk_events: int = 1024,
                compression: str | None = "gzip") -> None:
    """Write `count` events of the set `seed` to one HDF5 file in the HEP-CNN layout.

    Generates `chunk_events` events at a time (bounded memory); normweight is normalised over the whole
    file. Each HDF5 chunk holds one event: a streamed (shuffled) read then inflates only the events
    it needs, where chunks of k events would inflate k times the data. `compression` "gzip" (level
    1 with byte shuffling: these synthetic events shrink 17x) or None (raw chunks: a read is a copy,
    no inflating on the reading rank's cores). The file appears under `path` only when complete
    (written to `path`.tmp, then renamed).
    """
    if count < 1 or chunk_events < 1:
        raise ValueError(f"count and chunk_events must be positive, got {count}, {chunk_events}")
    if compression not in ("gzip", None):
        raise ValueError(f"compression must be 'gzip' or None, got {compression!r}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    s = image_size
    try:
        with open_h5(tmp, "w") as f:
            packed = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
            data = f.create_dataset("data", (count, 3, s, s), np.float32, chunks=(1, 3, s, s),
                                    **(packed if compression == "gzip" else {}))
            label = np.empty(count, np.float32)
            weight = np.empty(count, np.float32)
            for start in range(0, count, chunk_events):
                block = generate_events(start, min(chunk_events, count - start), seed, image_size)
                stop = start + block["label"].size
                data[start:stop] = block["data"]
                label[start:stop] = block["label"]
                weight[start:stop] = block["weight"]
            f.create_dataset("label", data=label)
            f.create_dataset("weight", data=weight)
            f.create_dataset("normweight", data=_normalise_weights(weight.astype(np.float64), label))
            f.attrs["channels"] = list(CHANNELS)
            f.attrs["seed"] = seed
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def generate_dataset(out_dir: Path, n_train: int, n_val: int, seed: int, image_size: int,
                     compression: str | None = "gzip") -> list[Path]:
    """Write out_dir/train.h5 (n_train events) and out_dir/val.h5 (n_val events) of the dataset `seed`
    (chunks compressed as write_split's `compression`) and return their paths; raises DataError
    rather than overwrite a file."""
    return common.generate_dataset(
        out_dir, {"train": n_train, "val": n_val}, seed, ".h5",
        lambda path, count, set_seed: write_split(path, count, set_seed, image_size, compression=compression))


def split_files(data_dir: Path, split: str) -> list[Path]:
    """Sorted HDF5 files of `split` ("train": train*.h5; "val": val*.h5, which includes valid*/validation*)."""
    return common.split_files(data_dir, split, ".h5")


def _inspect(files: list[Path], image_size: int | None) -> tuple[list[int], int]:
    """inspect_files' checks; (events per file, S)."""
    counts = []
    size = image_size
    for path in files:
        common.check_file(path)
        try:
            with open_h5(path, "r") as f:
                missing = [k for k in KEYS if k not in f]
                if missing:
                    raise DataError(f"{path}: missing dataset(s) {', '.join(missing)}")
                arrays = {k: f[k] for k in KEYS}
                for key, ds in arrays.items():
                    if not isinstance(ds, h5py.Dataset):
                        raise DataError(f"{path}: {key} is not a dataset")
                    if ds.dtype.kind not in "fiu":
                        raise DataError(f"{path}: {key} has non-numeric dtype {ds.dtype}")
                shape = arrays["data"].shape or ()
                if (len(shape) != 4 or shape[1] != len(CHANNELS) or shape[2] != shape[3]
                        or min(shape) < 1):
                    raise DataError(f"{path}: data has shape {shape}, expected (N, 3, S, S)")
                if size is not None and shape[2] != size:
                    raise DataError(f"{path}: images are {shape[2]}x{shape[3]}, expected {size}x{size}")
                size = shape[2]
                for key in KEYS[1:]:
                    if arrays[key].shape != (shape[0],):
                        raise DataError(f"{path}: {key} has shape {arrays[key].shape}, "
                                        f"expected ({shape[0]},)")
                counts.append(int(shape[0]))
        except HDF5_ERRORS as e:
            raise DataError(f"{path}: not a readable HDF5 file, or corrupt ({first_line(e)})") from None
    return counts, int(size or 0)


def inspect_files(files: list[Path], image_size: int | None = None) -> list[int]:
    """Check each file's layout (readable HDF5, all KEYS numeric datasets, data (N, 3, S, S) with
    N, S >= 1, one S across files and S == image_size if given, 1-D arrays of length N) without
    reading the data; returns events per file. DataError naming the file and the problem."""
    return _inspect(files, image_size)[0]


def inspect_splits(data_dir: Path, image_size: int | None = None) -> dict[str, stream.SplitFiles]:
    """Both splits' files under data_dir, inspected (inspect_files) before any event is read:
    {"train": ..., "val": ...}, sample_shape (3, S, S). Meant for rank 0 alone (stream.once)."""
    def inspect(files: list[Path]) -> tuple[list[int], tuple[int, ...]]:
        counts, size = _inspect(files, image_size)
        return counts, (len(CHANNELS), size, size)

    return stream.inspect_splits(data_dir, ".h5", inspect)


def shard_range(total: int, rank: int, size: int, equal: bool) -> tuple[int, int]:
    """Contiguous [start, stop) of the global event index for `rank`; see common.shard_range."""
    return common.shard_range(total, rank, size, equal, unit="events")


class HepLayout:
    """The HEP-CNN layout for ai500.data.stream: `data` (S, S, 3) float32 channels last (read
    channels first, a block at a time, and transposed into the output), `label`, `weight`,
    `normweight` per event (resident: a streamed shard holds them whole)."""

    unit = "events"
    resident = KEYS[1:]

    def __init__(self, image_size: int):
        self.fields = {"data": (image_size, image_size, len(CHANNELS)),
                       **{k: () for k in KEYS[1:]}}

    def open(self, path: Path) -> contextlib.AbstractContextManager[dict[str, h5py.Dataset]]:
        return common.open_datasets(path, KEYS)

    def read(self, datasets: dict[str, h5py.Dataset], path: Path, lo: int, hi: int,
             out: dict[str, np.ndarray]) -> None:
        try:
            for key, view in out.items():
                block = datasets[key][lo:hi]
                np.copyto(view, block.transpose(0, 2, 3, 1) if key == "data" else block,
                          casting="unsafe")
        except HDF5_ERRORS as e:
            raise DataError(f"{path}: cannot read events {lo}..{hi} ({first_line(e)})") from None
        for key, view in out.items():
            if not np.all(np.isfinite(view)):
                raise DataError(f"{path}: {key} holds non-finite values in events {lo}..{hi}")
        if "label" in out:
            bad = (out["label"] != 0) & (out["label"] != 1)
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(f"{path}: label of event {lo + i} is {out['label'][i]:g}, "
                                "expected 0 or 1")


def open_shards(data_dir: Path, image_size: int, dist: Any,
                stage: str) -> tuple[dict[str, stream.Staged | stream.Streamed], stream.StageChoice]:
    """This rank's "train" and "val" shards of the files under data_dir (fields data (n, S, S, 3),
    label, weight, normweight), inspected by rank 0 alone, staged or streamed as `stage` decides
    (ai500.data.stream.open_files). Every rank must call it (a broadcast)."""
    return stream.open_files(lambda: inspect_splits(Path(data_dir), image_size),
                             lambda split: HepLayout(split.sample_shape[1]), dist, stage,
                             "hep.inspect")


def load_range(files: list[Path], counts: list[int], start: int, stop: int) -> dict[str, np.ndarray]:
    """Read global events [start, stop) of the concatenated `files` (with `counts` events each), only those.

    Returns `data` (n, S, S, 3) float32 channels last and `label`, `weight`, `normweight` (n,) float32,
    each read into one buffer allocated once (ai500.data.stream.Shard.load).
    DataError for unreadable events, non-finite values or a label other than 0 or 1.
    """
    first = next(common.file_ranges(files, counts, start, stop))[0]
    with common.open_hdf5(first) as f:  # S, for callers that did not keep inspect_splits' result
        size = int(f["data"].shape[2])
    split = stream.SplitFiles(tuple(map(str, files)), tuple(counts), (len(CHANNELS), size, size))
    return stream.Shard(HepLayout(size), split, start, stop).load()
