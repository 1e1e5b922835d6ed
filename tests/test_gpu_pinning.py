"""GPU pinning (ai500.dist.choose_gpu) over fake device lists and launcher environments: the exact
device each rank keeps, or the exact one-line error. No GPU and no MPI needed."""

from __future__ import annotations

import pytest

from ai500 import dist
from ai500.errors import ConfigError


def gpus(n: int) -> list[str]:
    """What tf.config.list_physical_devices("GPU") names, n devices."""
    return [f"/physical_device:GPU:{i}" for i in range(n)]


def choice(n: int, local_rank: int, local_size: int, env: dict[str, str],
           cuda_build: bool = True) -> tuple[int | None, tuple[str, ...]]:
    binding = dist.choose_gpu(gpus(n), local_rank, local_size, env, cuda_build)
    return binding.keep, binding.node_ids


# mpirun on a node, CUDA_VISIBLE_DEVICES unset: every rank sees every GPU, keeps its local rank's.
@pytest.mark.parametrize("n, local_size", [(1, 1), (2, 2), (4, 4), (4, 2)])
def test_plain_mpirun_keeps_the_local_ranks_gpu(n, local_size):
    env = {"OMPI_COMM_WORLD_SIZE": str(local_size)}
    for local_rank in range(local_size):
        assert choice(n, local_rank, local_size, env) == (local_rank, (str(local_rank),))


# srun in an allocation (--gpus-per-node=4, no per-task binding): each task sees the node's four
# allocated GPUs, which may be any of the node's; the rank keeps its local rank's, named as Slurm
# named it for the energy meter.
def test_srun_without_per_task_binding_keeps_the_local_ranks_allocated_gpu():
    env = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "CUDA_VISIBLE_DEVICES": "4,5,6,7",
           "SLURM_GPUS_ON_NODE": "4", "SLURM_JOB_GPUS": "4,5,6,7"}
    assert choice(4, 1, 4, env) == (1, ("5",))
    assert choice(4, 3, 4, env) == (3, ("7",))


# srun --gpus-per-task=1 (or --gpu-bind=single:1): Slurm already gave each task one GPU.
@pytest.mark.parametrize("visible, local_rank", [("0", 0), ("1", 1), ("3", 3)])
def test_srun_gpus_per_task_keeps_the_one_gpu_slurm_bound(visible, local_rank):
    env = {"SLURM_PROCID": str(local_rank), "SLURM_LOCALID": str(local_rank),
           "CUDA_VISIBLE_DEVICES": visible, "SLURM_GPUS_ON_NODE": "4"}
    assert choice(1, local_rank, 4, env) == (0, (visible,))


def test_gpus_named_by_uuid_are_recorded_by_uuid():
    env = {"CUDA_VISIBLE_DEVICES": "GPU-8f3e0c1a-1111-2222-3333-444455556666,GPU-0a1b2c3d-aaaa-"
                                   "bbbb-cccc-ddddeeeeffff"}
    assert choice(2, 1, 2, env) == (1, ("GPU-0a1b2c3d-aaaa-bbbb-cccc-ddddeeeeffff",))


# sbatch --gpus-per-node=2 slurm/resnet.sbatch: the script starts the ranks with srun (the
# batch step's CUDA_VISIBLE_DEVICES, inherited by every task) or with mpirun (Open MPI's local
# rank; SLURM_LOCALID is the batch step's 0 on every rank).
@pytest.mark.parametrize("launcher", ["srun", "mpirun"])
def test_sbatch_job_with_two_gpus_per_node(launcher):
    for local_rank in range(2):
        env = {"SLURM_JOB_ID": "77", "SLURM_GPUS_ON_NODE": "2", "SLURM_JOB_GPUS": "0,1",
               "CUDA_VISIBLE_DEVICES": "0,1", "AI500_EXPECTED_SIZE": "4"}
        env.update({"SLURM_LOCALID": str(local_rank), "SLURM_PROCID": str(local_rank)}
                   if launcher == "srun" else
                   {"SLURM_LOCALID": "0", "OMPI_COMM_WORLD_LOCAL_RANK": str(local_rank)})
        assert choice(2, local_rank, 2, env) == (local_rank, (str(local_rank),))


TOO_MANY = ("4 ranks on this node but 2 GPUs visible to each: one GPU per rank needs at most 2 "
            "ranks per node (mpirun --npernode 2, srun --ntasks-per-node=2 --gpus-per-task=1), or "
            "AI500_GPU_BIND=none to share them")


@pytest.mark.parametrize("env", [{}, {"CUDA_VISIBLE_DEVICES": "0,1"}])
def test_more_ranks_on_a_node_than_gpus(env):
    for local_rank in range(4):  # every rank of the node says so, not only the unlucky ones
        with pytest.raises(ConfigError) as caught:
            dist.choose_gpu(gpus(2), local_rank, 4, env, True)
        assert str(caught.value) == TOO_MANY


def test_two_ranks_sharing_a_nodes_only_gpu():
    """One GPU visible and nothing bound it to this rank: the node's ranks would share it."""
    with pytest.raises(ConfigError) as caught:
        dist.choose_gpu(gpus(1), 0, 2, {}, True)
    assert str(caught.value) == (
        "2 ranks on this node but 1 GPU visible to each: one GPU per rank needs at most 1 rank per "
        "node (mpirun --npernode 1, srun --ntasks-per-node=1 --gpus-per-task=1), or "
        "AI500_GPU_BIND=none to share them")


CPU_BUILD = ("GPUs are allocated to this job ({}) but TensorFlow sees none: this is the CPU-only "
             "TensorFlow build (tensorflow-cpu); install the GPU stack with `make install "
             "ACCEL=cuda` and run its Python, .venv-cuda/bin/python (or set AI500_GPU_BIND=none "
             "to run on the CPU anyway)")


@pytest.mark.parametrize("env, evidence", [
    ({"CUDA_VISIBLE_DEVICES": "0,1"}, "CUDA_VISIBLE_DEVICES=0,1"),
    ({"SLURM_GPUS_ON_NODE": "4"}, "SLURM_GPUS_ON_NODE=4"),
    ({"SLURM_JOB_GPUS": "2,3"}, "SLURM_JOB_GPUS=2,3"),
    ({"CUDA_VISIBLE_DEVICES": "", "SLURM_GPUS_ON_NODE": "0", "SLURM_JOB_GPUS": "1"},
     "SLURM_JOB_GPUS=1"),
])
def test_gpus_allocated_but_the_cpu_build_sees_none(env, evidence):
    with pytest.raises(ConfigError) as caught:
        dist.choose_gpu([], 0, 1, env, cuda_build=False)
    assert str(caught.value) == CPU_BUILD.format(evidence)


def test_gpus_allocated_but_the_cuda_build_sees_none():
    with pytest.raises(ConfigError) as caught:
        dist.choose_gpu([], 0, 1, {"SLURM_GPUS_ON_NODE": "1"}, cuda_build=True)
    assert str(caught.value) == (
        "GPUs are allocated to this job (SLURM_GPUS_ON_NODE=1) but TensorFlow (a CUDA build) sees "
        "none: the NVIDIA driver is not loadable here or the devices are not in this job's "
        "cgroup; check nvidia-smi on this node (or set AI500_GPU_BIND=none to run on the CPU "
        "anyway)")


@pytest.mark.parametrize("env", [
    {},
    {"CUDA_VISIBLE_DEVICES": ""},            # hidden on purpose
    {"CUDA_VISIBLE_DEVICES": "-1"},          # CUDA reads nothing past an invalid entry
    {"CUDA_VISIBLE_DEVICES": "NoDevFiles"},  # what older Slurm sets for a job without GPUs
    {"SLURM_GPUS_ON_NODE": "0", "SLURM_JOB_GPUS": ""},
])
def test_no_gpus_anywhere_is_a_cpu_run(env):
    binding = dist.choose_gpu([], 0, 2, env, cuda_build=False)
    assert binding == dist.NO_GPU and not binding.on_gpu
    assert binding.describe()["device"] == "CPU"


def test_bind_none_leaves_every_gpu_to_tensorflow_and_lifts_the_checks():
    env = {"AI500_GPU_BIND": "none", "CUDA_VISIBLE_DEVICES": "2,3"}
    binding = dist.choose_gpu(gpus(2), 3, 8, env, True)  # 8 ranks, 2 GPUs: allowed
    assert (binding.keep, binding.node_ids) == (None, ("2", "3"))
    assert binding.rule == "AI500_GPU_BIND=none: all 2 GPU(s) this rank sees left to TensorFlow"
    # the CPU build on a GPU allocation runs on the CPU when asked to
    assert not dist.choose_gpu([], 0, 1, {**env, "SLURM_GPUS_ON_NODE": "2"}, False).on_gpu


def test_an_unknown_bind_mode_is_refused():
    with pytest.raises(ConfigError) as caught:
        dist.choose_gpu(gpus(2), 0, 2, {"AI500_GPU_BIND": "socket"}, True)
    assert str(caught.value) == ("AI500_GPU_BIND=socket: expected local (one GPU per rank, the "
                                 "default) or none (leave the GPUs to TensorFlow)")


def test_cuda_visible_devices_is_read_as_cuda_reads_it():
    assert dist.cuda_visible_devices({}) is None
    assert dist.cuda_visible_devices({"CUDA_VISIBLE_DEVICES": "0, 2"}) == ("0", "2")
    assert dist.cuda_visible_devices({"CUDA_VISIBLE_DEVICES": "1,-1,3"}) == ("1",)
    assert dist.cuda_visible_devices({"CUDA_VISIBLE_DEVICES": "MIG-abc/1/2"}) == ("MIG-abc/1/2",)


def test_the_binding_record():
    binding = dist.choose_gpu(gpus(4), 2, 4, {}, True)
    assert binding.describe() == {
        "device": "GPU 2", "name": "", "compute_capability": None, "visible_gpus": 4,
        "node_ids": ["2"], "rule": "GPU 2 of the 4 this rank sees (its local rank)"}


class FakeTfConfig:
    """The tf.config calls pin_gpu makes, recorded."""

    def __init__(self):
        self.visible, self.growth = None, []
        self.experimental = self

    def set_visible_devices(self, devices, kind):
        self.visible = (list(devices), kind)

    def set_memory_growth(self, device, on):
        self.growth.append((device, on))

    def get_device_details(self, device):
        return {"device_name": f"Fake A100 ({device})", "compute_capability": (8, 0)}


@pytest.fixture
def fake_tf(monkeypatch):
    import tensorflow as tf

    fake = FakeTfConfig()
    monkeypatch.setattr(tf, "config", fake)
    return fake


def test_pin_keeps_one_gpu_with_memory_growth(fake_tf):
    devices = gpus(4)
    binding = dist.pin_gpu(dist.choose_gpu(devices, 1, 4, {}, True), devices)
    assert fake_tf.visible == (["/physical_device:GPU:1"], "GPU")
    assert fake_tf.growth == [("/physical_device:GPU:1", True)]
    assert (binding.name, binding.compute_capability) == (
        "Fake A100 (/physical_device:GPU:1)", (8, 0))


def test_pin_with_bind_none_hides_nothing_but_grows_memory(fake_tf):
    devices = gpus(2)
    dist.pin_gpu(dist.choose_gpu(devices, 0, 1, {"AI500_GPU_BIND": "none"}, True), devices)
    assert fake_tf.visible is None
    assert fake_tf.growth == [(d, True) for d in devices]


def test_pin_on_a_cpu_changes_nothing(fake_tf):
    assert dist.pin_gpu(dist.NO_GPU, []) == dist.NO_GPU
    assert (fake_tf.visible, fake_tf.growth) == (None, [])
