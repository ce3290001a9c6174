#!/usr/bin/env bash
# Train one covidlens config on several GPU nodes under SLURM, through Lightning's DDP.
#
#   sbatch --nodes=2 --gres=gpu:4 --ntasks-per-node=4 scripts/slurm_train.sh configs/covid_ct_lite0_b.yaml [--set key=value ...]
#
# SLURM starts one task per GPU (srun below); Lightning reads the ranks and the master address from
# SLURM's variables, so nothing here sets MASTER_ADDR or ranks. trainer.devices and trainer.num_nodes
# must match --ntasks-per-node and --nodes, which is why they are taken from SLURM's own variables.
# The repository (with its .venv) and the data folder must be at the same paths on every node.
#SBATCH --job-name=covidlens-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

config=${1:?usage: sbatch scripts/slurm_train.sh CONFIG.yaml [--set key=value ...]}
shift
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
export COVIDLENS_DATA=${COVIDLENS_DATA:-$PWD/../shared/data}
# The GPU does the arithmetic; one BLAS thread per task keeps the CPUs for the data-loader workers,
# one per CPU that SLURM gave the task.
export OMP_NUM_THREADS=1

srun .venv/bin/covidlens train --config "$config" --no-progress \
    --set trainer.accelerator=gpu \
    --set trainer.devices="${SLURM_NTASKS_PER_NODE}" \
    --set trainer.num_nodes="${SLURM_JOB_NUM_NODES}" \
    --set trainer.strategy=ddp \
    --set data.num_workers="${SLURM_CPUS_PER_TASK:-4}" \
    "$@"
