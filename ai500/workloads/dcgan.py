"""DCGAN on weak-lensing convergence maps (cosmology), trained with Horovod data parallelism.

Each step trains both networks on this rank's batch of real maps and a batch of generated ones:
one forward pass (generator on latent noise, discriminator on the real and on the fake batch) under
two gradient tapes, each wrapped by Horovod so the discriminator's and the generator's gradients
are averaged over all ranks separately; both Adam optimizers then step. After the first step both
networks and both optimizers' states are broadcast from rank 0. The latent noise of a step depends
on (seed, rank, epoch, step): ranks draw different samples, and a run repeats exactly from its seed.

What is evaluated is an exponential moving average of the generator's weights (decay `ema_decay`
per step; started from the broadcast weights, so identical on every rank), run with batch
statistics in its batch norms (fixed evaluation batches of 64). Measured on the small preset, the
raw generator's P(k) error swings by a factor 2-3 from one check to the next (GAN dynamics) and
its moving-average batch-norm statistics lag the changing weights (pixel KS 0.1-0.2 where batch
statistics give 0.03-0.06); the averaged generator is smoother, but not always better: in one
1-rank, batch-64 small run (seed 1) its P(k) error stayed at 0.53-0.64 over epochs 11-16 while
the raw generator's was 0.21-0.44, and bias-corrected averages of decay 0.995-0.999 swung less
still (0.04 per epoch) but sat at 0.62-0.75 (README, dcgan, "Time to target").

Quality (every epoch, all ranks): `eval_maps` maps in all (a fixed global number, split over the
ranks in whole evaluation batches, from latent vectors seeded by the run seed: the same maps at
any rank count) are generated, mapped back to κ, and their power spectra and pixel histograms
summed; the held-out real maps are summarised the same way, shard by shard. One allreduce adds
the sums, so every rank gets the same numbers, then
`val_pk_error` (median |P_gen/P_real − 1| over k bins), `val_ks` (pixel KS statistic) and the target
metric `val_quality` = max(val_pk_error / PK_THRESHOLD, val_ks / KS_THRESHOLD) (≤ 1: both pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ai500 import dist as distlib
from ai500 import precision
from ai500.config import RunConfig, settings_from
from ai500.data import common, cosmo, stream
from ai500.dist import Dist
from ai500.metrics import cosmo_quality as cq
from ai500.metrics import flops
from ai500.models.dcgan import UPSAMPLING, DCGANConfig, build_discriminator, build_generator
from ai500.watchdog import progress
from ai500.workloads import steps_per_epoch
from ai500.workloads.schedule import schedule_for

EVAL_BATCH = 64
ADAM_BETA1 = 0.5  # DCGAN's Adam settings (Radford et al., 2016)


@dataclass(frozen=True)
class DataSettings:
    """The `data` section: synthetic set sizes and seed, map size, evaluation sample, normalisation."""

    image_size: int
    n_train: int
    n_val: int
    seed: int
    eval_maps: int
    norm_shift: float = cosmo.SHIFT
    norm_scale: float = cosmo.SCALE_A
    norm_log_range: float = cosmo.LOG_RANGE

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{f.name} must be a number, got {value!r}")
        if min(self.image_size, self.n_train, self.n_val, self.eval_maps) < 1:
            raise ValueError("image_size, n_train, n_val and eval_maps must be >= 1")
        if self.eval_maps % EVAL_BATCH:
            raise ValueError(f"eval_maps must be a multiple of the evaluation batch {EVAL_BATCH}")
        if min(self.norm_shift, self.norm_scale, self.norm_log_range) <= 0:
            raise ValueError("norm_shift, norm_scale and norm_log_range must be > 0")


def load_shards(data: DataSettings, data_path: str | None, dist: Dist, stage: str
                ) -> tuple[stream.Staged | stream.Streamed, stream.Staged | stream.Streamed,
                           stream.StageChoice, str]:
    """This rank's training maps (equal counts on all ranks) and held-out maps (all covered), field
    maps: κ float32 (n, S, S); from CosmoGAN files (inspected by rank 0 alone and broadcast, then
    staged in memory or streamed as `stage` decides) or, without a path, generated in memory. The
    one collective (the inspection's broadcast) comes before anything a rank can fail at alone."""
    if data_path is None:
        shards, choice = stream.stage_synthetic(
            cosmo.CosmoLayout(data.image_size), {"train": data.n_train, "val": data.n_val}, dist,
            stage, lambda split, start, count: {"maps": cosmo.generate_maps(
                start, count, cosmo.split_seed(data.seed, split), data.image_size)})
        source = f"synthetic, generated in memory (data seed {data.seed})"
    else:
        shards, choice = cosmo.open_shards(Path(data_path), data.image_size, dist, stage)
        source = f"files under {data_path}"
    return shards["train"], shards["val"], choice, source


def evaluation_latents(maps: int, latent_dim: int, seed: int, dist: Dist) -> np.ndarray:
    """This rank's share of the `maps` latent vectors every evaluation generates from: one fixed
    global set (seeded by the run seed alone), split over the ranks in whole batches of
    EVAL_BATCH, so the generated sample, and the noise of its spectrum error and KS, is the same
    whatever the rank count (a rank may get none)."""
    every = np.random.default_rng([seed, 0x6576616C]).standard_normal((maps, latent_dim))
    first, stop = common.shard_range(maps // EVAL_BATCH, dist.rank, dist.size, equal=False,
                                     allow_empty=True)
    return every[first * EVAL_BATCH:stop * EVAL_BATCH].astype(np.float32)


class Workload:
    """DCGAN generator + discriminator trained adversarially with Horovod."""

    kind = "training"

    def __init__(self, cfg: RunConfig, dist: Dist):
        self.cfg, self.dist = cfg, dist
        self.data = settings_from(DataSettings, cfg.data, "data")
        self.train, self.val, choice, self.data_source = load_shards(self.data, cfg.data_path,
                                                                      dist, cfg.stage)
        self.stage = choice.describe()  # recorded by the driver in this rank's trace
        self.model_cfg = settings_from(DCGANConfig, {**cfg.model, "image_size": self.data.image_size},
                                   "model")
        with precision.policy(cfg.precision):
            self.generator = build_generator(self.model_cfg)
            self.discriminator = build_discriminator(self.model_cfg)
            self.generator_ema = build_generator(self.model_cfg, name="generator_ema")
        self.samples_per_step = cfg.train.batch_size
        self.steps_per_epoch = steps_per_epoch(len(self.train), self.samples_per_step, "maps")
        # Square-root scaling for Adam, held after the warm-up as DCGAN trains; one schedule
        # object per optimizer, the same rates for both networks.
        self.schedule = schedule_for(cfg.train, dist.size, self.steps_per_epoch,
                                     rule="sqrt", decay="constant")
        self.d_opt = precision.optimizer(
            tf.keras.optimizers.Adam(self.schedule, beta_1=ADAM_BETA1), cfg.precision)
        self.g_opt = precision.optimizer(tf.keras.optimizers.Adam(
            schedule_for(cfg.train, dist.size, self.steps_per_epoch, rule="sqrt",
                         decay="constant"), beta_1=ADAM_BETA1), cfg.precision)
        self._forward = tf.function(self._losses, jit_compile=True) if cfg.xla else self._losses
        self.eval_latent = evaluation_latents(self.data.eval_maps, self.model_cfg.latent_dim,
                                              cfg.seed, dist)
        self._real_stats: dict[str, np.ndarray] | None = None
        self.last_spectra: tuple[np.ndarray, np.ndarray] | None = None
        self._broadcast_done = False

    def _normalise(self, kappa: np.ndarray) -> np.ndarray:
        d = self.data
        return cosmo.normalise(kappa, d.norm_shift, d.norm_scale, d.norm_log_range)

    def _denormalise(self, s: np.ndarray) -> np.ndarray:
        d = self.data
        return cosmo.denormalise(s, d.norm_shift, d.norm_scale, d.norm_log_range)

    def describe(self) -> dict[str, Any]:
        return {
            "model": "DCGAN",
            "generator_parameters": int(self.generator.count_params()),
            "generator_upsampling": UPSAMPLING[self.model_cfg.upsample],
            "evaluated_generator": f"weight average, decay {self.model_cfg.ema_decay:g} per step, "
                                   f"batch statistics over batches of {EVAL_BATCH}",
            "discriminator_parameters": int(self.discriminator.count_params()),
            "map_shape": [self.data.image_size, self.data.image_size],
            "latent_dim": self.model_cfg.latent_dim,
            "data_source": self.data_source,
            "train_maps_per_rank": len(self.train),
            "train_maps_used_per_epoch": self.steps_per_epoch * self.samples_per_step * self.dist.size,
            "stage_rank0": self.stage,
            "val_maps_this_rank": len(self.val),
            "eval_generated_maps": self.data.eval_maps,
            "eval_generated_maps_this_rank": len(self.eval_latent),
            "normalisation": f"s = clip(ln((k + {self.data.norm_shift:g}) / {self.data.norm_scale:g}) / "
                             f"{self.data.norm_log_range:g}, -1, 1); metrics on k = inverse(s)",
            "optimizer": f"Adam (beta1 {ADAM_BETA1}) for each network, same learning rate",
            "lr_rule": self.schedule.describe(),
            "quality": f"val_quality = max(val_pk_error / {cq.PK_THRESHOLD:g}, "
                       f"val_ks / {cq.KS_THRESHOLD:g})",
        }

    def checkpoint_state(self) -> dict[str, Any]:
        # Adam's slots exist before a restore. The noise needs no state: it is drawn from
        # (seed, rank, epoch, step), so a resume on the same rank count draws what the
        # uninterrupted run would; on another count the ranks draw that count's streams.
        self.d_opt.build(self.discriminator.trainable_variables)
        self.g_opt.build(self.generator.trainable_variables)
        return {"generator": self.generator, "discriminator": self.discriminator,
                "generator_ema": self.generator_ema, "d_opt": self.d_opt, "g_opt": self.g_opt}

    def train_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # Map order from (seed, epoch, rank); latent noise from (seed, rank, epoch, step).
        # Staged or streamed, the same maps (normalisation is elementwise, so per batch is exact).
        _, order = stream.epoch_order(self.cfg.seed, epoch, self.dist.rank, len(self.train))
        batch, latent = self.samples_per_step, self.model_cfg.latent_dim
        maps = self.train.batches(stream.step_indices(order, batch, self.steps_per_epoch))
        for step, b in enumerate(maps):
            z = np.random.default_rng([self.cfg.seed, self.dist.rank, epoch, step]).standard_normal(
                (batch, latent)).astype(np.float32)
            yield self._normalise(b["maps"])[..., None], z

    def _losses(self, real, z):
        """Forward pass of both networks: (d_loss, g_loss, real logits, fake logits), float32
        (XLA-compiled with --xla, and so is its gradient)."""
        bce = tf.nn.sigmoid_cross_entropy_with_logits
        fake = self.generator(z, training=True)
        real_logit = self.discriminator(real, training=True)[:, 0]
        fake_logit = self.discriminator(fake, training=True)[:, 0]
        d_loss = (tf.reduce_mean(bce(tf.ones_like(real_logit), real_logit)) +
                  tf.reduce_mean(bce(tf.zeros_like(fake_logit), fake_logit)))
        g_loss = tf.reduce_mean(bce(tf.ones_like(fake_logit), fake_logit))
        return d_loss, g_loss, real_logit, fake_logit

    @tf.function
    def _train_step(self, real, z):
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            d_loss, g_loss, real_logit, fake_logit = self._forward(real, z)
        d_vars = self.discriminator.trainable_variables
        g_vars = self.generator.trainable_variables
        d_grads = precision.averaged_gradients(d_tape, d_loss, d_vars, self.d_opt)
        g_grads = precision.averaged_gradients(g_tape, g_loss, g_vars, self.g_opt)
        self.d_opt.apply_gradients(zip(d_grads, d_vars))
        self.g_opt.apply_gradients(zip(g_grads, g_vars))
        decay = self.model_cfg.ema_decay
        for avg, var in zip(self.generator_ema.weights, self.generator.weights):
            avg.assign(decay * avg + (1.0 - decay) * var)
        scales = {f"{net}_{key}": value for net, opt in (("d", self.d_opt), ("g", self.g_opt))
                  for key, value in precision.loss_scale(opt).items()}
        return {"d_loss": d_loss, "g_loss": g_loss, "d_real": tf.reduce_mean(tf.sigmoid(real_logit)),
                "d_fake": tf.reduce_mean(tf.sigmoid(fake_logit)), **scales}

    def train_step(self, batch: tuple[tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        stats = self._train_step(*batch)
        if not self._broadcast_done:
            # The weight average starts from the broadcast generator (after a resume it was
            # restored with the rest).
            if distlib.broadcast_training_state([self.generator, self.discriminator],
                                                [self.g_opt, self.d_opt]):
                for avg, var in zip(self.generator_ema.weights, self.generator.weights):
                    avg.assign(var)
            self._broadcast_done = True
        return stats

    @tf.function(reduce_retracing=True)
    def _generate(self, z):
        # Batch statistics in the averaged generator's batch norms (its moving statistics are unused).
        return self.generator_ema(z, training=True)[..., 0]

    def generate(self, z: np.ndarray) -> np.ndarray:
        """Normalised maps s (n, S, S) float32 from latent vectors: the averaged generator, batches
        of EVAL_BATCH (so a map depends on its batch, identically in every evaluation)."""
        size = self.data.image_size
        maps = [np.zeros((0, size, size), np.float32)]
        for i in range(0, len(z), EVAL_BATCH):
            maps.append(self._generate(z[i:i + EVAL_BATCH]).numpy())
            progress()  # a long evaluation is progress, not a stall, for the watchdog
        return np.concatenate(maps)

    def _summary(self, kappa: np.ndarray, s: np.ndarray) -> np.ndarray:
        sums, counts = cq.spectrum_sums(kappa)
        return np.concatenate([sums, counts, cq.pixel_histogram(s)])

    def _reduce(self, local: np.ndarray) -> dict[str, np.ndarray]:
        # The summaries are sums over maps: one allreduce adds every rank's (the same result on
        # every rank, a fixed-size message whatever the rank count).
        total = distlib.allreduce_sum(local.astype(np.float64))
        nbins = self.data.image_size // 2
        return {"sums": total[:nbins], "counts": total[nbins:2 * nbins], "hist": total[2 * nbins:]}

    def evaluate(self) -> dict[str, float]:
        if self._real_stats is None:  # the held-out maps never change: summarise them once
            # (additive summaries, so batch by batch: a streamed shard is never held whole)
            local = sum(self._summary(b["maps"], self._normalise(b["maps"])) for b in
                        self.val.batches(stream.blocks(len(self.val), EVAL_BATCH)))
            self._real_stats = self._reduce(local)
        s = self.generate(self.eval_latent)
        gen = self._reduce(self._summary(self._denormalise(s), s))
        # One model on every rank, to checkpoint. After generating: evaluation uses batch
        # statistics, and running the averaged generator in training mode moved its (unused)
        # moving statistics differently on each rank.
        distlib.average_statistics([self.generator, self.discriminator, self.generator_ema])
        real = self._real_stats
        p_gen, p_real = gen["sums"] / gen["counts"], real["sums"] / real["counts"]
        self.last_spectra = (p_gen, p_real)
        pk = cq.spectrum_error(p_gen, p_real) if np.all(np.isfinite(p_gen)) else float("inf")
        ks = cq.ks_from_histograms(gen["hist"], real["hist"])
        return {
            "val_quality": cq.combined_quality(pk, ks),
            "val_pk_error": pk,
            "val_ks": ks,
            "val_generated_maps": float(gen["hist"].sum() / self.data.image_size**2),
            "val_real_maps": float(real["hist"].sum() / self.data.image_size**2),
        }

    def flops_per_sample(self) -> dict[str, Any]:
        batch, cfg = self.samples_per_step, self.model_cfg
        s = cfg.image_size
        g_fwd = flops.forward_flops(lambda z: self.generator(z, training=False),
                                    [tf.TensorSpec([batch, cfg.latent_dim], tf.float32)]) / batch
        d_fwd = flops.forward_flops(lambda x: self.discriminator(x, training=False),
                                    [tf.TensorSpec([batch, s, s, 1], tf.float32)]) / batch
        forward = g_fwd + 2 * d_fwd
        return {
            "forward": forward,
            "train": flops.TRAIN_TO_FORWARD * forward,
            "generator_forward": g_fwd,
            "discriminator_forward": d_fwd,
            "method": f"tf-profiler forward counts at batch {batch} (1 multiply-add = 2 FLOPs); per "
                      "training sample (one real map): generator forward on one latent vector + "
                      "discriminator forward on the real and on the generated map; training = "
                      f"{flops.TRAIN_TO_FORWARD:g} x that forward (both networks' backward passes); "
                      "evaluation and the generator weight average not counted",
        }

    def write_figures(self, run_dir: Path, n_show: int = 8) -> list[Path]:
        """Rank 0 (no collectives): a PNG grid of generated maps over real held-out maps and a plot of
        the power spectra from the last evaluation; returns the paths written."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = min(n_show, len(self.eval_latent), len(self.val))
        gen = self._denormalise(self.generate(self.eval_latent[:n]))
        real = next(self.val.batches([np.arange(n)]))["maps"]
        lo, hi = np.percentile(real, [1, 99])
        fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
        for j in range(n):
            for row, maps, label in ((0, gen, "generated"), (1, real, "real")):
                ax = axes[row][j]
                ax.imshow(maps[j], vmin=lo, vmax=hi, cmap="viridis")
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(label)
        fig.suptitle("convergence maps κ: generated (top) vs held-out real (bottom)")
        grid = Path(run_dir) / "dcgan_maps.png"
        fig.savefig(grid, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths = [grid]
        if self.last_spectra is not None:
            p_gen, p_real = self.last_spectra
            k = np.arange(1, len(p_real) + 1)
            fig, ax = plt.subplots(figsize=(5, 3.6))
            ax.loglog(k, p_real, label="held-out real")
            ax.loglog(k, p_gen, "--", label="generated")
            ax.set_xlabel("k (grid fundamental)")
            ax.set_ylabel("P(k) of κ")
            ax.legend()
            spectra = Path(run_dir) / "dcgan_power_spectrum.png"
            fig.savefig(spectra, dpi=100, bbox_inches="tight")
            plt.close(fig)
            paths.append(spectra)
        return paths
