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
  echo "as root: OK (exit status $rc)"
else
  echo "demo: FAILED"; exit 1
fi
rm -rf "$CRYO_STORE"
unset CRYO_STORE

# The same for an ordinary user, through cryo's service: a user made for
# the demo, and a cryod of its own (a site runs one per node: docs/admin.md).
user=cryo-demo
site=$(mktemp -d /tmp/cryo-demo-site-XXXXXX)
chmod 755 "$site"
install -d -m 1777 "$site/store"
printf '[store]\npath = "%s/store/{user}"\n[service]\nsocket = "%s/cryod.sock"\n' "$site" "$site" > "$site/cryo.conf"
made_user=
id "$user" >/dev/null 2>&1 || { useradd -m -s /bin/sh "$user"; made_user=1; }
CRYO_CONFIG=$site/cryo.conf "$(command -v cryod || echo /usr/local/sbin/cryod)" 2>"$site/cryod.log" &
cryod_pid=$!
cleanup() {
  kill "$cryod_pid" 2>/dev/null; wait "$cryod_pid" 2>/dev/null || true
  pkill -KILL -u "$user" 2>/dev/null || true
  [ -n "$made_user" ] && userdel -r "$user" 2>/dev/null
  rm -rf "$site"
}
trap cleanup EXIT
for _ in $(seq 50); do [ -S "$site/cryod.sock" ] && break; sleep 0.1; done
as_user() { runuser -u "$user" -- env CRYO_CONFIG="$site/cryo.conf" HOME="$(getent passwd "$user" | cut -d: -f6)" "$@"; }
log=$site/store/$user/$job/stdout.log

step "as $user: cryo run --name $job -- sh -c 'id -un; <the same computation>'"
as_user cryo run --name $job -- sh -c "id -un; $cmd" &
sup=$!
sleep 2
head -n 1 "$log"
tail -n 1 "$log"

step "as $user: cryo checkpoint --stop $job ; cryo restore $job"
as_user cryo checkpoint --stop $job
wait $sup || true
as_user cryo restore $job
rc=$?
ls -ld "$site/store/$user/$job"
if [ "$(grep -c '^step' "$log")" = 60 ] && tail -n 1 "$log" | grep -q 'sum 1830$' && [ "$(head -n 1 "$log")" = "$user" ]; then
  echo "as $user: OK (exit status $rc)"
  echo "demo: OK"
else
  echo "demo: FAILED"; exit 1
fi
