# shellcheck shell=bash
# Shared body of slurm/*.sbatch: start `python -m ai500.run` on every task of the allocation.
#
# Sourced by each .sbatch script, which then calls `ai500_main BENCHMARK "$@"`; the script's own
# arguments go to ai500.run (a --benchmark among them overrides the script's default).
# GPUs: every rank keeps one GPU itself, at start-up (ai500/dist.py), whichever launcher started it.
#
# Environment (all optional; defaults in brackets):
#   AI500_HOME        the ai500 checkout            [found from the submitted script's path]
#   AI500_PYTHON      interpreter with ai500 installed  [a job with GPUs: the GPU stack's
#                     $AI500_HOME/.venv-cuda/bin/python (make install ACCEL=cuda), else .venv's;
#                     a job without: .venv's, else .venv-cuda's; else python3]
#   AI500_OUT         where run directories go; relative to the submit directory  [runs]
#   AI500_LAUNCHER    srun | mpirun | auto   [auto: srun when `srun --mpi=list` offers
#                     $AI500_SRUN_MPI, else mpirun]
#   AI500_SRUN_MPI    the srun --mpi plugin  [pmix]
#   AI500_SRUN_ARGS   extra srun options (split on spaces)
#   AI500_MPIRUN_ARGS extra mpirun options (split on spaces)
#   AI500_GPU_BIND    local: each rank keeps one GPU, its local rank's among those it sees;
#                     none: ranks leave the GPUs to TensorFlow (read by ai500/dist.py)  [local]
#   AI500_DRY_RUN     1: print what would run and stop (used by the tests)

ai500_die() {
    echo "ai500: $*" >&2
    exit 1
}

# Which launcher starts the ranks: srun or mpirun (printed).
ai500_launcher() {
    local choice=${AI500_LAUNCHER:-auto} mpi=${AI500_SRUN_MPI:-pmix}
    case $choice in
        srun | mpirun)
            command -v "$choice" >/dev/null ||
                ai500_die "AI500_LAUNCHER=$choice but $choice is not on PATH"
            echo "$choice" ;;
        auto)
            if command -v srun >/dev/null && srun --mpi=list 2>&1 | grep -qw -- "$mpi"; then
                echo srun
            elif command -v mpirun >/dev/null; then
                echo mpirun
            else
                ai500_die "no launcher: srun offers no --mpi=$mpi and mpirun is not on PATH"
            fi ;;
        *) ai500_die "AI500_LAUNCHER=$choice: expected srun, mpirun or auto" ;;
    esac
}

# The checkout's virtual environments in the order to use them (printed): the GPU stack's first
# when Slurm gave the job GPUs on this node.
ai500_venvs() {
    if [[ ${SLURM_GPUS_ON_NODE:-0} =~ ^[1-9][0-9]*$ || -n ${SLURM_JOB_GPUS:-} ]]; then
        echo .venv-cuda .venv
    else
        echo .venv .venv-cuda
    fi
}

# Number of ranks the allocation asks for (printed).
ai500_ntasks() {
    if [[ ${SLURM_NTASKS:-} =~ ^[0-9]+$ ]]; then
        echo "$SLURM_NTASKS"
    elif [[ ${SLURM_JOB_NUM_NODES:-} =~ ^[0-9]+$ && ${SLURM_NTASKS_PER_NODE:-} =~ ^[0-9]+$ ]]; then
        echo $((SLURM_JOB_NUM_NODES * SLURM_NTASKS_PER_NODE))
    else
        ai500_die "SLURM_NTASKS is not set: submit this script with sbatch (e.g. sbatch -n 2 ...)"
    fi
}

# Write slurm_energy.json into the run directory this job made (see slurm/sacct_energy.py).
ai500_record_energy() {
    local run_dir=$1 py=$2 existed=$3
    if [[ ! -d $run_dir || $existed == 1 ]]; then
        # ai500 refuses to reuse a directory; an earlier run's results are left alone.
        echo "ai500: this job made no run directory $run_dir: job energy not recorded" >&2
        return 0
    fi
    "$py" "$AI500_HOME/slurm/sacct_energy.py" "${SLURM_JOB_ID:-}" "$run_dir/slurm_energy.json" ||
        echo "ai500: could not record the job's energy from sacct" >&2
}

ai500_main() {
    local bench=$1
    shift
    [[ -f ${AI500_HOME:-}/slurm/common.sh ]] ||
        ai500_die "AI500_HOME=${AI500_HOME:-} is not an ai500 checkout"

    # Options the script itself resolves; every other argument goes to ai500.run unchanged.
    local out=${AI500_OUT:-runs} name="" want="" flag="" arg
    local -a pass=()
    for arg in "$@"; do
        if [[ -n $want ]]; then
            printf -v "$want" '%s' "$arg"
            want=""
            continue
        fi
        flag=$arg
        case $arg in
            --benchmark) want=bench ;;
            --out) want=out ;;
            --run-name) want=name ;;
            --benchmark=*) bench=${arg#*=} ;;
            --out=*) out=${arg#*=} ;;
            --run-name=*) name=${arg#*=} ;;
            *) pass+=("$arg") ;;
        esac
    done
    [[ -z $want ]] || ai500_die "$flag needs a value"
    [[ -n ${SLURM_JOB_ID:-} ]] ||
        ai500_die "SLURM_JOB_ID is not set: submit this script with sbatch"
    [[ $out == /* ]] || out=${SLURM_SUBMIT_DIR:-$PWD}/$out
    if [[ -z $name ]]; then
        name=$bench-job$SLURM_JOB_ID
        # A requeued job must not collide with the directory of its first attempt.
        if [[ ${SLURM_RESTART_COUNT:-0} =~ ^[1-9][0-9]*$ ]]; then
            name+=-restart$SLURM_RESTART_COUNT
        fi
    fi

    local py=${AI500_PYTHON:-} venv
    if [[ -z $py ]]; then
        py=python3
        for venv in $(ai500_venvs); do
            if [[ -x $AI500_HOME/$venv/bin/python ]]; then
                py=$AI500_HOME/$venv/bin/python
                break
            fi
        done
    fi
    command -v "$py" >/dev/null || ai500_die "AI500_PYTHON=$py is not an executable"

    local launcher ntasks
    launcher=$(ai500_launcher) || exit 1
    ntasks=$(ai500_ntasks) || exit 1
    # Every rank compares MPI's world size with this and stops with a clear message if the
    # ranks did not join one job (ai500/dist.py).
    export AI500_EXPECTED_SIZE=$ntasks
    export PYTHONPATH=$AI500_HOME${PYTHONPATH:+:$PYTHONPATH}

    local -a cmd extra
    case $launcher in
        srun)
            read -ra extra <<<"${AI500_SRUN_ARGS:-}"
            cmd=(srun "--mpi=${AI500_SRUN_MPI:-pmix}" "--ntasks=$ntasks" --kill-on-bad-exit=1)
            # Since Slurm 22.05 srun no longer inherits --cpus-per-task from sbatch.
            [[ -n ${SLURM_CPUS_PER_TASK:-} ]] && cmd+=("--cpus-per-task=$SLURM_CPUS_PER_TASK")
            ;;
        mpirun)
            read -ra extra <<<"${AI500_MPIRUN_ARGS:-}"
            cmd=(mpirun -np "$ntasks")
            ((EUID == 0)) && cmd+=(--allow-run-as-root)
            [[ -n ${SLURM_CPUS_PER_TASK:-} ]] && cmd+=(--map-by "slot:PE=$SLURM_CPUS_PER_TASK")
            cmd+=(-x AI500_EXPECTED_SIZE -x PYTHONPATH)
            [[ -n ${AI500_GPU_BIND:-} ]] && cmd+=(-x AI500_GPU_BIND)
            ;;
    esac
    cmd+=("${extra[@]}" "$py" -m ai500.run --benchmark "$bench" --out "$out" --run-name "$name"
          "${pass[@]}")

    echo "ai500: job $SLURM_JOB_ID, $ntasks ranks on ${SLURM_JOB_NUM_NODES:-1} node(s)" \
        "via $launcher; run directory $out/$name; checkout $AI500_HOME"
    echo "ai500: AI500_EXPECTED_SIZE=$ntasks $(printf '%q ' "${cmd[@]}")"
    [[ ${AI500_DRY_RUN:-0} == 1 ]] && return 0

    local rc=0 existed=0
    [[ -e $out/$name ]] && existed=1
    "${cmd[@]}" || rc=$?
    if ((rc != 0)); then
        echo "ai500: $launcher exited with status $rc" >&2
        if [[ $launcher == srun && ${AI500_SRUN_MPI:-pmix} != pmix* ]]; then
            echo "ai500: srun --mpi=${AI500_SRUN_MPI} gives MPI no way to join the $ntasks" \
                "tasks into one job; use AI500_SRUN_MPI=pmix or AI500_LAUNCHER=mpirun" >&2
        fi
    fi
    ai500_record_energy "$out/$name" "$py" "$existed"
    return "$rc"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    echo "usage: source slurm/common.sh in an sbatch script (see slurm/resnet.sbatch)" >&2
    exit 2
fi
