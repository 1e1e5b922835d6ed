#!/usr/bin/env bash
# Build Horovod 0.28.1 with NCCL (HOROVOD_GPU_OPERATIONS=NCCL) into the GPU stack's virtual
# environment and check hvd.nccl_built(). Run by `make install ACCEL=cuda`, after
# tensorflow[and-cuda]==2.15.1 is installed there:
#
#   install/horovod_cuda.sh PYTHON
#
# Horovod's CUDA kernels need nvcc, and PyPI has no CUDA 12 nvcc: the nvidia-cuda-nvcc-cu12
# wheels (12.0 to 12.9) carry ptxas, libnvvm and the crt headers only. So the toolkit is the
# system's or the cluster's (e.g. `module load cuda/12.2`); everything else is the wheels'.
#   CUDA_TOOLKIT  the CUDA toolkit to compile with (bin/nvcc, include/, lib64/); unset: the first
#                 CUDA 12 among `nvcc` on PATH, $CUDA_HOME, /usr/local/cuda, /usr/local/cuda-12*.
#                 CUDA 12 matches TensorFlow 2.15's CUDA 12.2 wheels and runs on any driver that
#                 runs TensorFlow. A CUDA 13 toolkit is accepted when named here, with a warning:
#                 its kernels need an NVIDIA driver >= 580 and compute capability >= 7.5.
#   NCCL_HOME     a system NCCL 2 (include/nccl.h, lib/libnccl.so); unset: the nvidia-nccl-cu12
#                 wheel's, the same libnccl.so.2 TensorFlow loads, linked through $VENV/nccl
#   CUDA_CC_LIST  compute capabilities of Horovod's kernels, PTX for the last one so newer GPUs
#                 JIT-compile it [CUDA 12: 60,70,75,80,86,89,90 (Pascal to Hopper);
#                 CUDA 13: 75,80,86,89,90,100,120 (Turing to Blackwell)]
# The CUDA runtime is the libcudart.so.12 of the wheel TensorFlow loads, linked shared (Horovod's
# default is the toolkit's static one): one runtime in the process. The library finds it and
# libnccl through its RPATH, so no LD_LIBRARY_PATH is needed at run time.
set -euo pipefail

die() {
    echo "ai500: error: $*" >&2
    exit 1
}

py=${1:?usage: install/horovod_cuda.sh PYTHON}
venv=$(cd "$(dirname "$py")/.." && pwd)
nv=$("$py" -c 'import os, sysconfig; print(os.path.join(sysconfig.get_paths()["purelib"], "nvidia"))')

nvcc_major() {
    "$1/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p'
}

cuda_home=${CUDA_TOOLKIT:-}
if [[ -z $cuda_home ]]; then
    on_path=$(command -v nvcc || true)
    for candidate in ${on_path:+"$(dirname "$(dirname "$on_path")")"} ${CUDA_HOME:-} \
        /usr/local/cuda /usr/local/cuda-12*; do
        if [[ $(nvcc_major "$candidate") == 12 ]]; then
            cuda_home=$candidate
            break
        fi
    done
    [[ -n $cuda_home ]] || die "no CUDA 12 toolkit (nvcc) found on PATH, in \$CUDA_HOME," \
        "/usr/local/cuda or /usr/local/cuda-12*; Horovod's CUDA kernels need one, and the" \
        "nvidia-cuda-nvcc-cu12 wheels carry no nvcc (ptxas and libnvvm only). Load or install a" \
        "CUDA 12 toolkit (e.g. module load cuda/12.2) and run: make install ACCEL=cuda" \
        "CUDA_TOOLKIT=<its directory>"
fi
major=$(nvcc_major "$cuda_home")
case $major in
    12) cc_list=60,70,75,80,86,89,90 ;;
    13) cc_list=75,80,86,89,90,100,120
        echo "ai500: warning: CUDA_TOOLKIT=$cuda_home is CUDA 13, not 12 (TensorFlow's): Horovod's" \
            "kernels will need an NVIDIA driver >= 580 and a GPU of compute capability >= 7.5" >&2 ;;
    *) die "CUDA_TOOLKIT=$cuda_home: no CUDA 12 (or 13) nvcc there" \
        "($("$cuda_home/bin/nvcc" --version 2>&1 | tail -1))" ;;
esac

nccl_home=${NCCL_HOME:-}
if [[ -z $nccl_home ]]; then
    [[ -f $nv/nccl/include/nccl.h ]] || die "no $nv/nccl: the nvidia-nccl-cu12 wheel is missing"
    nccl_home=$venv/nccl
    rm -rf "$nccl_home"
    mkdir -p "$nccl_home/lib"
    ln -s "$nv/nccl/include" "$nccl_home/include"
    ln -s "$nv/nccl/lib/libnccl.so.2" "$nccl_home/lib/libnccl.so.2"
    ln -s libnccl.so.2 "$nccl_home/lib/libnccl.so"  # what the linker looks for
fi

# Horovod links TensorFlow's CUDA 12 runtime (the nvidia-cuda-runtime-cu12 wheel's libcudart.so.12,
# by name and RPATH), whichever toolkit compiles it: one runtime in the process.
cudart_dir=$nv/cuda_runtime/lib
[[ -f $cudart_dir/libcudart.so.12 ]] || die "no $cudart_dir/libcudart.so.12: the" \
    "nvidia-cuda-runtime-cu12 wheel is missing (tensorflow[and-cuda] installs it)"
link_cudart="-L$cudart_dir -Wl,--push-state,--no-as-needed -l:libcudart.so.12 -Wl,--pop-state"
export LDFLAGS="$link_cudart -Wl,-rpath,$cudart_dir ${LDFLAGS:-}"
# ... and not the toolkit's (Horovod's CMake would link its static runtime).
cmake_wrapper=$venv/horovod-cmake
cat >"$cmake_wrapper" <<'EOF'
#!/bin/sh
# cmake for Horovod's build: no CUDA runtime of the toolkit's (LDFLAGS names TensorFlow's).
case $1 in
    --build) exec cmake "$@" ;;
    *) exec cmake "$@" -DCMAKE_CUDA_RUNTIME_LIBRARY=None ;;
esac
EOF
chmod +x "$cmake_wrapper"

echo "ai500: building Horovod 0.28.1 with NCCL: CUDA $cuda_home ($("$cuda_home/bin/nvcc" --version |
    tail -1)), NCCL $nccl_home, compute capabilities ${CUDA_CC_LIST:-$cc_list}"
# Horovod's own Python dependencies (it is installed below without them: --force-reinstall must
# not reinstall the stack).
"$py" -m pip install -q cloudpickle packaging psutil pyyaml
start=$(date +%s)
# Horovod asks the `nvcc` on PATH for its kernels' flags before HOROVOD_CUDA_HOME's: CUDA 12 first.
PATH=$cuda_home/bin:$PATH \
    HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_CUDA_HOME=$cuda_home HOROVOD_NCCL_HOME=$nccl_home \
    HOROVOD_NCCL_LINK=SHARED HOROVOD_BUILD_CUDA_CC_LIST=${CUDA_CC_LIST:-$cc_list} \
    HOROVOD_CMAKE=$cmake_wrapper HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_GLOO=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j$(nproc) \
    "$py" -m pip install -q --no-build-isolation --no-cache-dir --force-reinstall --no-deps \
    horovod==0.28.1
echo "ai500: Horovod built in $(($(date +%s) - start)) s"

# The check (fails loudly): NCCL compiled in, and the library loads here (no GPU needed).
"$py" - <<'EOF'
import sys

import horovod
import horovod.tensorflow as hvd

nccl = hvd.nccl_built()
print(f"horovod {horovod.__version__}: nccl_built() = {nccl}, cuda_built() = {hvd.cuda_built()}, "
      f"mpi_built() = {hvd.mpi_built()}, gloo_built() = {hvd.gloo_built()}")
if not nccl:
    sys.exit("ai500: error: Horovod was built without NCCL (hvd.nccl_built() is 0): GPU "
             "gradients would be reduced through MPI on the host; see the build log above")
EOF
