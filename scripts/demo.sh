#!/usr/bin/env bash
# Set everything up, then show cryo's main job: a computation is
# checkpointed, killed, and restored, and continues where it was.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export CRYO_STORE=$(mktemp -d /tmp/cryo-demo-XXXXXX)
job=demo
# The "computation": a running sum, printed once per step.
cmd='s=0; i=0; while [ $i -lt 60 ]; do i=$((i+1)); s=$((s+i)); echo "step $i sum $s"; sleep 0.1; done'
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "cryo run --name $job -- sh -c '<a 60-step computation>'"
cryo run --name $job -- sh -c "$cmd" &
sup=$!
sleep 2
tail -n 2 "$CRYO_STORE/$job/stdout.log"

step "cryo checkpoint $job     (the job runs on; the checkpoint is flushed to the store)"
cryo checkpoint $job
sleep 1
tail -n 1 "$CRYO_STORE/$job/stdout.log"

step "the job is killed (as a node failure or a time limit would)"
kill -9 "$(cryo status $job --json | sed -n 's/.*"job_pid": \([0-9]*\).*/\1/p')"
wait $sup || true
cryo status $job | sed -n '1,4p'

step "cryo restore $job        (it continues from the checkpoint)"
cryo restore $job
rc=$?

step "the job's output: every step exactly once, the final sum is 1+...+60 = 1830"
grep -c '^step' "$CRYO_STORE/$job/stdout.log" | sed 's/^/lines: /'
tail -n 3 "$CRYO_STORE/$job/stdout.log"
if [ "$(grep -c '^step' "$CRYO_STORE/$job/stdout.log")" = 60 ] && tail -n 1 "$CRYO_STORE/$job/stdout.log" | grep -q 'sum 1830$'; then
  echo "demo: OK (exit status $rc)"
else
  echo "demo: FAILED"; exit 1
fi
rm -rf "$CRYO_STORE"
