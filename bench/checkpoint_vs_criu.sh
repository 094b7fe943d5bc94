#!/usr/bin/env bash
# cryo's checkpoint and restore against raw CRIU on the same job, in the
# same run: the numbers behind bench/NOTES.md.
#
#   bench/checkpoint_vs_criu.sh [-s "256 1024 4096"] [-k "random halfzero matrix"] [-r 3] [-i 5] [-w] [-t DIR] [-o FILE.json]
#
# -w: before each timed step, on both sides alike, write and remove a file
# of 1.25 times the job's size in the tmpfs, so that the step does not land
# on memory this VM has not used lately (its first use is slow, and which
# side gets it is a lottery; bench/NOTES.md, "Touching the memory
# first").  Without -w the steps take memory as it comes.
#
# -t: the tmpfs that holds both cryo's fast tier and raw CRIU's tmpfs dumps
# (default /dev/shm/cryo, cryo's default fast tier, which
# scripts/mount-fast-tier.sh mounts with huge pages); the JSON records its
# mount options.
#
# For each size (MiB) and kind of memory (tests/progs/memhog.c), repeated
# -r times, cryo and raw CRIU interleaved (who goes first alternates
# between repetitions), with -i seconds of idle before
# every step (the VM's memory supply makes lone absolute times noisy; see
# the platform notes):
#   cryo: run memhog; 'cryo checkpoint' (returns once dumped into the fast
#         tier); wait until it is durable; read the fast copy back (what the
#         flush rereads, and what streaming the dump could save at most);
#         mutate a tenth of the memory;
#         'cryo checkpoint --wait' (its bytes added, and its time until
#         durable against the same raw dump to disk plus sync: raw CRIU
#         has no cheaper second dump on kernels without soft-dirty
#         tracking); 'cryo checkpoint --stop'; restore from
#         the fast copy; stop again; drop the page cache; 'cryo restore --durable'
#   raw:  the same job in its own PID namespace and session; 'criu dump
#         --leave-running' into tmpfs; 'criu dump' into the store's file system,
#         then 'sync'; drop the page cache; 'criu restore' from there; 'criu
#         restore' from tmpfs
# Each round's store is kept, and removed only at the end (deleting a
# round's thousands of chunks right before the next round would slow its
# creates; bench/NOTES.md).  Every restored job must find its memory
# intact (PASS), so a failed restore cannot pass for a fast one.  Prints a
# table of medians and ratios and writes them, with every sample, as JSON
# (-o, default bench/results-HOST-DATE.json).  Needs root and
# scripts/setup.sh done.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
sizes="256 1024 4096" kinds="random halfzero matrix" reps=3 idle=5 out="" tdir=/dev/shm/cryo warm=0
while getopts "s:k:r:i:wt:o:" o; do
  case $o in
    s) sizes=$OPTARG ;; k) kinds=$OPTARG ;; r) reps=$OPTARG ;; i) idle=$OPTARG ;; w) warm=1 ;; t) tdir=$OPTARG ;; o) out=$OPTARG ;;
    *) sed -n '2,42p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
out=${out:-bench/results-$(hostname)-$(date +%Y%m%d-%H%M).json}
criu=${CRYO_CRIU:-/opt/cryo/criu/bin/criu}
memhog=$PWD/build/tests/progs/memhog
[ -x "$memhog" ] || { echo "bench: build cryo first (scripts/setup.sh)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/cryo-bench-XXXXXX)   # on the store's (disk) file system
mkdir -p "$tdir"
shm=$(mktemp -d "$tdir/bench-XXXXXX")           # tmpfs: the fast tier and raw CRIU's tmpfs dumps
tmpfs_opts=$(findmnt -n -o FS-OPTIONS --target "$shm")
echo "bench: tmpfs $shm ($tmpfs_opts)" >&2
export CRYO_STORE=$work/store CRYO_FAST_TIER=$shm/fast
mkdir -p "$work/kept"
cleanup() {
  pkill -9 -f "^$memhog $work" 2>/dev/null || true
  for p in $(cat "$work"/*.sup 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work" "$shm"
}
trap cleanup EXIT

now() { date +%s.%N; }
# Arithmetic, printed as JSON numbers (bc alone prints ".5").
calc() { printf '%.6f' "$(echo "$1" | bc -l)"; }
since() { calc "$(now) - $1"; }
# Times a command; a failure stops the benchmark (a failed restore is fast).
timed() {
  local s; s=$(now)
  "$@" >"$work/last.out" 2>&1 || { echo "bench: '$*' failed:" >&2; tail -n 5 "$work/last.out" >&2; exit 1; }
  since "$s"
}
# When FILE was last written: the end of a step that cryo reports by an
# event line, without the polling interval of wait_line.
written() { stat -c %.9Y "$1"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
pause() { sleep "$idle"; }
# The idle pause, then with -w memory made recently used (above).
settle() {  # MIB
  pause
  (( warm )) || return 0
  warm_memory "$shm" "$1"
}

declare -A S   # samples: S[size,kind,metric] = "v1 v2 ..."
add() { S[$1,$2,$3]="${S[$1,$2,$3]:-} $4"; }

cryo_round() {  # MIB KIND REP
  local mib=$1 kind=$2 name=b$1-$2-$3
  local log=$CRYO_STORE/$name/stdout.log events=$CRYO_STORE/$name/cryo.log
  cryo run --quiet --name "$name" -- "$memhog" "$work/go-$name" "$mib" "$kind" & echo $! > "$work/$name.sup"
  wait_line "$log" READY; settle "$mib"
  local s; s=$(now)
  local j; j=$(cryo checkpoint "$name" --json)
  add "$mib" "$kind" cryo_return "$(since "$s")"
  add "$mib" "$kind" cryo_frozen "$(json_num "$j" frozen_seconds)"
  wait_line "$events" "checkpoint 0001 committed"
  j=$(cryo status "$name" --json)
  add "$mib" "$kind" cryo_durable "$(json_num "$j" durable_seconds)"
  add "$mib" "$kind" cryo_stored "$(json_num "$j" stored_bytes)"
  add "$mib" "$kind" raw_bytes "$(json_num "$(sed -n '/"checkpoints"/,$p' <<<"$j")" bytes)"
  # How long reading the fast copy back takes: what streaming could save.
  s=$(now); cat "$CRYO_FAST_TIER"/"$name"-*/0001/images/pages-* > /dev/null
  add "$mib" "$kind" readback "$(since "$s")"
  touch "$work/go-$name.mutate"; wait_line "$log" MUTATED; settle "$mib"
  j=$(cryo checkpoint "$name" --wait --json)
  add "$mib" "$kind" cryo_second "$(json_num "$j" stored_bytes)"
  add "$mib" "$kind" cryo_second_durable "$(json_num "$j" durable_seconds)"
  pause
  cryo checkpoint "$name" --stop --json > /dev/null
  wait "$(cat "$work/$name.sup")" || true
  settle "$mib"
  s=$(now); cryo restore --quiet "$name" & echo $! > "$work/$name.sup"
  wait_line "$events" "restored from checkpoint 0003 \(fast copy\)"
  add "$mib" "$kind" cryo_restore_fast "$(calc "$(written "$events") - $s")"
  pause
  cryo checkpoint "$name" --stop --json > /dev/null
  wait "$(cat "$work/$name.sup")" || true
  drop_caches; settle "$mib"
  s=$(now); cryo restore --quiet --durable "$name" & echo $! > "$work/$name.sup"
  wait_line "$events" "restored from checkpoint 0004 \(store\)"
  add "$mib" "$kind" cryo_restore_durable "$(calc "$(written "$events") - $s")"
  touch "$work/go-$name"; wait "$(cat "$work/$name.sup")" || true
  grep -q PASS "$log" || { echo "bench: cryo's restored job came back wrong" >&2; tail -3 "$log" >&2; exit 1; }
  # The fast copies go (memory); the job's store stays until the end, as
  # deleting its thousands of chunks would slow the next round's creates
  # (bench/NOTES.md, "Deletions slow file creation").
  rm -rf "$CRYO_FAST_TIER/$name"-*
  mv "$CRYO_STORE/$name" "$work/kept/"
}

raw_round() {  # MIB KIND REP
  local mib=$1 kind=$2 name=r$1-$2-$3
  local tmpimg=$shm/$name disk=$work/$name log=$work/$name.log
  mkdir -p "$tmpimg" "$disk"
  # unshare's own stderr must not be the job's log (CRIU checks its size).
  LOG=$log unshare --pid --fork setsid sh -c 'exec "$0" "$@" > "$LOG" 2>&1' "$memhog" "$work/go-$name" "$mib" "$kind" \
    2>/dev/null < /dev/null &
  wait_line "$log" READY; settle "$mib"
  local pid; pid=$(pgrep -f "^$memhog $work/go-$name" | head -1)
  add "$mib" "$kind" raw_dump_tmpfs "$(timed "$criu" dump -t "$pid" -D "$tmpimg" --shell-job --leave-running)"
  settle "$mib"
  local d; d=$(timed "$criu" dump -t "$pid" -D "$disk" --shell-job)
  add "$mib" "$kind" raw_dump_disk_sync "$(calc "$d + $(timed sync)")"
  drop_caches; settle "$mib"
  add "$mib" "$kind" raw_restore_disk "$(timed "$criu" restore -D "$disk" --shell-job -d --pidfile "$work/$name.pid")"
  kill -9 "$(cat "$work/$name.pid")"; sleep 0.5; settle "$mib"
  add "$mib" "$kind" raw_restore_tmpfs "$(timed "$criu" restore -D "$tmpimg" --shell-job -d)"
  touch "$work/go-$name"
  wait_line "$log" 'PASS|FAIL'
  grep -q PASS "$log" || { echo "bench: the raw restore came back wrong" >&2; exit 1; }
  rm -rf "$tmpimg" "$disk"
}

# Every round's store is kept until the end: about 1.2 times its size.
nkinds=$(wc -w <<<"$kinds")
need=0; for mib in $sizes; do need=$(( need + mib * 12 / 10 * nkinds * reps )); done
avail=$(( $(df --output=avail -k "$work" | tail -1) / 1024 ))
[ "$avail" -gt $(( need + 2048 )) ] || {
  echo "bench: needs about $(( need + 2048 )) MiB free under /var/tmp, has $avail: give fewer sizes (-s) or rounds (-r)" >&2; exit 1; }

printf '%-6s %-9s %-22s %10s %10s %7s  %s\n' size kind row cryo raw ratio target
json_rows=()
for mib in $sizes; do
  for kind in $kinds; do
    # Who goes first alternates: the second one of a pair gets the memory
    # the first just freed, which this VM hands out faster than fresh.
    for r in $(seq "$reps"); do
      if (( r % 2 )); then cryo_round "$mib" "$kind" "$r"; raw_round "$mib" "$kind" "$r"
      else raw_round "$mib" "$kind" "$r"; cryo_round "$mib" "$kind" "$r"; fi
    done
    m() { median ${S[$mib,$kind,$1]}; }
    row() {  # NAME CRYO RAW TARGET
      local ratio; ratio=$(calc "$2 / $3")
      printf '%-6s %-9s %-22s %10.3f %10.3f %7.2f  %s\n' "${mib}M" "$kind" "$1" "$2" "$3" "$ratio" "$4"
      json_rows+=("{\"size_mib\": $mib, \"kind\": \"$kind\", \"row\": \"$1\", \"cryo\": $2, \"raw\": $3, \"ratio\": $ratio, \"target\": \"$4\"}")
    }
    row "frozen (s)" "$(m cryo_frozen)" "$(m raw_dump_tmpfs)" "<= 1.10"
    row "checkpoint returns (s)" "$(m cryo_return)" "$(m raw_dump_tmpfs)" ""
    row "durable (s)" "$(m cryo_durable)" "$(m raw_dump_disk_sync)" "<= 1.00"
    row "stored (MiB)" "$(calc "$(m cryo_stored) / 1048576")" "$(calc "$(m raw_bytes) / 1048576")" "halfzero <= 0.55"
    row "2nd, 10% changed (MiB)" "$(calc "$(m cryo_second) / 1048576")" "$(calc "$(m cryo_stored) / 1048576")" "<= 0.15 of 1st"
    row "2nd, durable (s)" "$(m cryo_second_durable)" "$(m raw_dump_disk_sync)" "<= 1.00"
    row "restore, fast (s)" "$(m cryo_restore_fast)" "$(m raw_restore_tmpfs)" "<= 1.20"
    row "restore, durable (s)" "$(m cryo_restore_durable)" "$(m raw_restore_disk)" "<= 1.20"
    row "read fast copy (s)" "$(m readback)" "$(m cryo_durable)" "(of durable)"

  done
done

write_results "$out" "\"reps\": $reps, \"warm\": $warm, \"idle_s\": $idle, \"tmpfs\": \"$tmpfs_opts\","
