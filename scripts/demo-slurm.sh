#!/usr/bin/env bash
# The problem cryo exists for, on one machine: a Slurm batch job with a
# one-minute time limit that needs two minutes of work.  cryo
# checkpoints it at each limit's warning, requeues it, and restores it in
# the next allocation until it finishes, with the output of one
# uninterrupted run.  Brings up a real Slurm cluster on localhost
# (scripts/slurm-cluster.sh) and takes it down again.  Takes about 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scripts/setup.sh >/dev/null

export CRYO_SLURM_DIR=/run/cryo-slurm-demo CRYO_SLURM_PORT=36817
export SLURM_CONF=$CRYO_SLURM_DIR/slurm.conf
work=$(mktemp -d /tmp/cryo-slurm-demo-XXXXXX)
chmod 755 "$work"
export CRYO_STORE=$work/store
trap 'scancel --full "${id:-0}" 2>/dev/null || true; "$repo/scripts/slurm-cluster.sh" down >/dev/null 2>&1; rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a Slurm cluster on this machine"
scripts/slurm-cluster.sh up
solver=$repo/build/tests/progs/solver

step "cryo sbatch --margin 20s --time=1 -- solver 480 250     (2 minutes of work, a 1-minute limit)"
cd "$work"
id=$(cryo sbatch --json --margin 20s --time=1 -o "$work/solver.out" -e "$work/cryo.err" -- "$solver" 480 250 |
     sed -n 's/.*"slurm_job_id": "\([0-9]*\)".*/\1/p')
echo "Slurm job $id"
last=""
while [ -n "$(squeue -h -j "$id" 2>/dev/null)" ]; do
  line=$(grep -h 'requeued\|restored\|finished\|warning' "$work/cryo.err" 2>/dev/null | tail -n 1 || true)
  [ "$line" != "$last" ] && [ -n "$line" ] && echo "$line" && last=$line
  sleep 1
done
grep -h 'requeued\|restored\|finished\|warning' "$work/cryo.err" | tail -n 1

step "cryo status slurm-$id"
cryo status "slurm-$id" | sed -n '/^slurm:/,/^output:/p' | sed '$d'

step "the job's output against an uninterrupted run of the same program"
"$solver" 480 0 >"$work/reference.out"
echo "lines: $(grep -c '^step' "$work/solver.out") steps, $(tail -n 1 "$work/solver.out")"
if cmp -s "$work/reference.out" "$work/solver.out"; then
  echo "demo-slurm: OK (identical to an uninterrupted run, each line once)"
else
  echo "demo-slurm: FAILED: the output differs"; exit 1
fi
