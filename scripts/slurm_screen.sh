#!/usr/bin/env bash
# Screen an archive of studies as a SLURM job array: task K of N screens the studies whose key hashes
# to K (covidlens screen --shard K/N), every task into the same output folder.
#
#   sbatch --array=0-15 scripts/slurm_screen.sh OUT_DIR INPUT... [--lesion-checkpoint M --ct-checkpoint M ...]
#
# Each task keeps its own ledger (OUT_DIR/screen-ledger-K-of-N.jsonl); a task that is killed or
# requeued resumes where it stopped. Every task rebuilds OUT_DIR/results.csv and index.html from all
# ledgers when it ends, so the last one leaves the whole table (or run 'covidlens screen' again with
# the same arguments and no --shard to collect them: every study is already done). The repository
# (with its .venv), the inputs and OUT_DIR must be at the same paths on every node.
#SBATCH --job-name=covidlens-screen
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --time=08:00:00
#SBATCH --output=%x-%A_%a.out
set -euo pipefail

out=${1:?usage: sbatch --array=0-N scripts/slurm_screen.sh OUT_DIR INPUT... [covidlens screen options]}
shift
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
# One process runs the models; the other CPUs of the task read studies ahead.
export OMP_NUM_THREADS=1
exec .venv/bin/covidlens screen "$@" --out "$out" \
    --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" --workers "$(( ${SLURM_CPUS_PER_TASK:-2} - 1 ))"
