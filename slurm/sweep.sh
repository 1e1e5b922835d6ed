#!/bin/bash
# Submit a weak or strong scaling sweep to Slurm: one batch job (slurm/<benchmark>.sbatch, -n N)
# per rank count and repeat, all leaving their run directories under one sweep directory with a
# manifest.json that records the job ids -- the layout python -m ai500.report reads. A thin front
# for `python launch/sweep.py --launcher slurm`, which plans the points (batch rules, names).
#
#   slurm/sweep.sh --benchmark resnet --mode weak --ranks 1,2,4,8 [--preset small] [--repeats R]
#                  [--out runs] [--global-batch G | --batch-size B] [--dry-run] [-- ai500.run args]
#
# sbatch options for every job go in SBATCH_* variables (SBATCH_PARTITION, SBATCH_TIMELIMIT,
# SBATCH_GPUS_PER_NODE, ...); the AI500_* variables of slurm/common.sh reach the jobs too. Job
# logs go to the current directory (ai500-<benchmark>-<jobid>.out) unless SBATCH_OUTPUT says.
# When the jobs have finished: python -m ai500.report SWEEP_DIR --out SWEEP_DIR/report
home=$(cd "$(dirname "$0")/.." && pwd)
py=${AI500_PYTHON:-$home/.venv/bin/python}
[[ -x $py ]] || py=python3
export SBATCH_OUTPUT=${SBATCH_OUTPUT:-$PWD/%x-%j.out}
exec "$py" "$home/launch/sweep.py" --launcher slurm "$@"
