# make install             the CPU stack (tensorflow-cpu, Horovod over MPI) in .venv
# make install ACCEL=cuda   the GPU stack in .venv-cuda: tensorflow[and-cuda], nvidia-ml-py, Horovod
#                           built with NCCL (install/horovod_cuda.sh): a CUDA 12 toolkit's nvcc
#                           (found, or CUDA_TOOLKIT=<dir>), the NCCL and CUDA runtime of the PyPI
#                           wheels (or NCCL_HOME=<dir>); CUDA_CC_LIST=<compute capabilities>
# make run    installs what is missing, then runs the default job (resnet, small preset, 2 ranks)
# make test   installs what is missing, then runs the test suite
# make sweep  a weak-scaling sweep over SWEEP_RANKS and its report
# make bench  performance ratios (instrumentation overhead, input pipeline), measured side by side;
#             the aggregator and report at 1,024-16,384 ranks (benchmarks/scale_model.py)
# ACCEL=cuda applies to every target (make test ACCEL=cuda runs the suite on the GPU stack).
SHELL := /bin/bash
ACCEL ?= cpu
# tensorflow-cpu and tensorflow[and-cuda] cannot share one environment: each stack has its own.
ifeq ($(ACCEL),cuda)
VENV ?= .venv-cuda
TENSORFLOW := "tensorflow[and-cuda]==2.15.1" nvidia-ml-py
else ifeq ($(ACCEL),cpu)
VENV ?= .venv
TENSORFLOW := "tensorflow-cpu==2.15.1"
else
$(error ACCEL=$(ACCEL): expected cpu or cuda)
endif
PY := $(VENV)/bin/python
NP ?= 2
PRESET ?= small
BENCHMARK ?= resnet
# Open MPI refuses to start as root unless told; ranks may exceed the cores (--oversubscribe)
# and must not be pinned to one core each on small machines (--bind-to none).
MPIRUN ?= mpirun --allow-run-as-root --oversubscribe --bind-to none
STAMP := $(VENV)/.ai500-installed

SWEEP_RANKS ?= 1,2

.PHONY: install run test bench sweep lint

install: $(STAMP)

$(STAMP): setup.py Makefile $(if $(filter cuda,$(ACCEL)),install/horovod_cuda.sh)
	@command -v mpirun >/dev/null && command -v mpicc >/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev)
	@command -v cmake >/dev/null && command -v g++ >/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++)
	@# A one-node Slurm for the Slurm tests (and sbatch users on this machine).
	@command -v slurmctld >/dev/null && command -v munged >/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge)
	@# Network and UTS namespaces for the multi-node tests (tests/multinode_cluster.py).
	@command -v ip >/dev/null && command -v nsenter >/dev/null && command -v unshare >/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 util-linux)
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q $(TENSORFLOW) "numpy<2" h5py psutil mpi4py pyyaml tqdm \
	  matplotlib pytest ruff mlperf-logging "pandas<2.3"
ifeq ($(ACCEL),cuda)
	# Horovod with NCCL, compiled against the TensorFlow just installed and a CUDA 12 toolchain;
	# stops here unless hvd.nccl_built().
	$(PY) -c "import horovod.tensorflow as h, sys; sys.exit(not h.nccl_built())" 2>/dev/null || \
	  CUDA_TOOLKIT="$(CUDA_TOOLKIT)" NCCL_HOME="$(NCCL_HOME)" CUDA_CC_LIST="$(CUDA_CC_LIST)" \
	  bash install/horovod_cuda.sh $(PY)
else
	# Horovod compiles against the TensorFlow just installed (--no-build-isolation), MPI only.
	$(PY) -c "import horovod.tensorflow" 2>/dev/null || \
	  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_GLOO=1 \
	  HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j$$(nproc) \
	  $(PY) -m pip install -q --no-build-isolation --no-cache-dir horovod==0.28.1
endif
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

# resnet reads its dataset from HDF5 files in the real HEP-CNN layout, generated once per preset.
ifeq ($(BENCHMARK),resnet)
DATA_DIR := data/hep-$(PRESET)
DATA_ARGS := --data $(DATA_DIR)
endif

run: install $(if $(DATA_DIR),$(DATA_DIR)/val.h5)
	$(MPIRUN) -np $(NP) $(PY) -m ai500.run --benchmark $(BENCHMARK) --preset $(PRESET) --out runs $(DATA_ARGS)

data/hep-%/val.h5:
	$(PY) -m ai500.data generate hep --preset $* --out data/hep-$*

test: install
	$(PY) -m pytest -q tests

# A short default: at most 3 epochs per point (stopping earlier at the target).
sweep: install
	$(PY) launch/sweep.py --benchmark $(BENCHMARK) --preset $(PRESET) --mode weak \
	  --ranks $(SWEEP_RANKS) --out runs --report -- --epochs 3

bench: install
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/micro_peak.py
	$(PY) benchmarks/scale_model.py

lint: install
	$(PY) -m ruff check ai500 tests launch benchmarks slurm
