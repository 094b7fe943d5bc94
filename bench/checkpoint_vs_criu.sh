#!/usr/bin/env bash
# Compare cryo checkpoint/restore with a raw criu dump/restore of the same
# job, in the same run, for 256 MiB, 1 GiB and 4 GiB.  Interleaved, same
# idle time before each step, 3 repetitions, medians and ratios (see
# platform notes: the VM's memory supply makes lone absolute times noisy).
#
#   bench/checkpoint_vs_criu.sh [SIZES_MIB...]     default: 256 1024 4096
# Needs: scripts/setup.sh done, root.  Prints a table:
#   checkpoint  'cryo checkpoint --stop' (durable: checksummed and fsynced) vs 'criu dump'
#   frozen      how long cryo kept the job frozen vs 'criu dump'
#   durable     'cryo checkpoint --stop' vs 'criu dump' followed by 'sync'
#   restore     'cryo restore' until the job runs (every byte verified first) vs 'criu restore -d'
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-256 1024 4096}"); [ $# -gt 0 ] || sizes=(256 1024 4096)
reps=3 idle=5
criu=${CRYO_CRIU:-/opt/cryo/criu/bin/criu}
memhog=build/tests/progs/memhog
work=$(mktemp -d /tmp/cryo-bench-XXXXXX)
export CRYO_STORE=$work/store
trap 'pkill -9 -f "$memhog $work" 2>/dev/null || true; rm -rf "$work"' EXIT
# Times a command; a failed one stops the benchmark (a failed restore is fast).
t() {
  local s=$(date +%s.%N)
  "$@" >"$work/last.out" 2>&1 || { echo "bench: '$*' failed:" >&2; tail -n 5 "$work/last.out" >&2; exit 1; }
  echo "$(date +%s.%N) - $s" | bc
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
wait_ready() { until grep -q READY "$1" 2>/dev/null; do sleep 0.2; done; }

printf '%-8s %-9s %10s %10s %7s\n' size step cryo_s criu_s ratio
for mib in "${sizes[@]}"; do
  cd_s=(); fz_s=(); rd_s=(); cr_s=(); cs_s=(); rr_s=()
  for r in $(seq $reps); do
    # cryo
    name=b$mib-$r
    cryo run --quiet --name "$name" -- "$memhog" "$work/go-$name" "$mib" & sup=$!
    wait_ready "$CRYO_STORE/$name/stdout.log"; sleep $idle
    s=$(date +%s.%N); out=$(cryo checkpoint "$name" --stop --json); cd_s+=("$(echo "$(date +%s.%N) - $s" | bc)")
    fz_s+=("$(echo "$out" | sed -n 's/.*"frozen_seconds": \([0-9.e-]*\).*/\1/p')")
    wait $sup || true; sleep $idle
    s=$(date +%s.%N); cryo restore --quiet "$name" & sup=$!
    until cryo status "$name" --json | grep -q '"state": "running"'; do sleep 0.01; done
    rd_s+=("$(echo "$(date +%s.%N) - $s" | bc)")
    touch "$work/go-$name"; wait $sup || true
    grep -q PASS "$CRYO_STORE/$name/stdout.log" || { echo "bench: cryo's restore came back wrong" >&2; exit 1; }
    # raw CRIU, same kind of job: new PID namespace, own session, output to a file
    img=$work/raw-$mib-$r; mkdir -p "$img"
    # (unshare's own stderr must not be the job's log: it writes there when
    # the dumped child dies, and CRIU then refuses the log's new size.)
    LOG="$work/raw-$mib-$r.log" unshare --pid --fork setsid sh -c 'exec "$0" "$@" > "$LOG" 2>&1' "$memhog" "$work/go-raw$mib-$r" "$mib" \
      2>/dev/null < /dev/null &
    wait_ready "$work/raw-$mib-$r.log"; sleep $idle
    pid=$(pgrep -f "^$memhog $work/go-raw$mib-$r" | head -1)
    cr_s+=("$(t "$criu" dump -t "$pid" -D "$img" --shell-job)")
    cs_s+=("$(echo "${cr_s[-1]} + $(t sync)" | bc)"); sleep $idle
    rr_s+=("$(t "$criu" restore -D "$img" --shell-job -d)")
    # The restored job must really run: it checks its memory and says PASS.
    touch "$work/go-raw$mib-$r"
    until grep -q 'PASS\|FAIL' "$work/raw-$mib-$r.log"; do sleep 0.1; done
    grep -q PASS "$work/raw-$mib-$r.log" || { echo "bench: the raw restore came back wrong" >&2; exit 1; }
    rm -rf "$img"
  done
  cd=$(median "${cd_s[@]}"); cr=$(median "${cr_s[@]}"); rd=$(median "${rd_s[@]}"); rr=$(median "${rr_s[@]}")
  fz=$(median "${fz_s[@]}"); cs=$(median "${cs_s[@]}")
  printf '%-8s %-9s %10.2f %10.2f %7.2f\n' "${mib}M" checkpoint "$cd" "$cr" "$(echo "$cd / $cr" | bc -l)"
  printf '%-8s %-9s %10.2f %10.2f %7.2f\n' "${mib}M" frozen "$fz" "$cr" "$(echo "$fz / $cr" | bc -l)"
  printf '%-8s %-9s %10.2f %10.2f %7.2f\n' "${mib}M" durable "$cd" "$cs" "$(echo "$cd / $cs" | bc -l)"
  printf '%-8s %-9s %10.2f %10.2f %7.2f\n' "${mib}M" restore "$rd" "$rr" "$(echo "$rd / $rr" | bc -l)"
done
