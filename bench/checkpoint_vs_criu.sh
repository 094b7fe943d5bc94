#!/usr/bin/env bash
# Compare cryo checkpoint/restore with a raw criu dump/restore of the same
# job, in the same run, for 256 MiB, 1 GiB and 4 GiB.  Interleaved, same
# idle time before each step, 3 repetitions, medians and ratios (see
# platform notes: the VM's memory supply makes lone absolute times noisy).
#
#   bench/checkpoint_vs_criu.sh [SIZES_MIB...]     default: 256 1024 4096
# Needs: scripts/setup.sh done, root.  Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-256 1024 4096}"); [ $# -gt 0 ] || sizes=(256 1024 4096)
reps=3 idle=5
criu=${CRYO_CRIU:-/opt/cryo/criu/bin/criu}
memhog=build/tests/progs/memhog
work=$(mktemp -d /tmp/cryo-bench-XXXXXX)
export CRYO_STORE=$work/store
trap 'pkill -9 -f "$memhog $work" 2>/dev/null || true; rm -rf "$work"' EXIT
t() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
wait_ready() { until grep -q READY "$1" 2>/dev/null; do sleep 0.2; done; }

printf '%-8s %-9s %10s %10s %7s\n' size step cryo_s criu_s ratio
for mib in "${sizes[@]}"; do
  cd_s=(); rd_s=(); cr_s=(); rr_s=()
  for r in $(seq $reps); do
    # cryo
    name=b$mib-$r
    cryo run --quiet --name "$name" -- "$memhog" "$work/go-$name" "$mib" & sup=$!
    wait_ready "$CRYO_STORE/$name/stdout.log"; sleep $idle
    cd_s+=("$(t cryo checkpoint "$name" --stop)"); wait $sup || true; sleep $idle
    s=$(date +%s.%N); cryo restore --quiet "$name" & sup=$!
    until cryo status "$name" --json | grep -q '"state": "running"'; do sleep 0.05; done
    rd_s+=("$(echo "$(date +%s.%N) - $s" | bc)")
    touch "$work/go-$name"; wait $sup || true
    # raw CRIU, same kind of job: new PID namespace, own session, output to a file
    img=$work/raw-$mib-$r; mkdir -p "$img"
    unshare --pid --fork setsid "$memhog" "$work/go-raw$mib-$r" "$mib" > "$work/raw-$mib-$r.log" 2>&1 < /dev/null &
    wait_ready "$work/raw-$mib-$r.log"; sleep $idle
    pid=$(pgrep -f "^$memhog $work/go-raw$mib-$r" | head -1)
    cr_s+=("$(t "$criu" dump -t "$pid" -D "$img" --shell-job)"); sleep $idle
    rr_s+=("$(t "$criu" restore -D "$img" --shell-job -d)")
    pkill -9 -f "$memhog $work/go-raw$mib-$r" || true
    rm -rf "$img"
  done
  cd=$(median "${cd_s[@]}"); cr=$(median "${cr_s[@]}"); rd=$(median "${rd_s[@]}"); rr=$(median "${rr_s[@]}")
  printf '%-8s %-9s %10.2f %10.2f %7.2f\n' "${mib}M" checkpoint "$cd" "$cr" "$(echo "$cd / $cr" | bc -l)"
  printf '%-8s %-9s %10.2f %10.2f %7.2f\n' "${mib}M" restore "$rd" "$rr" "$(echo "$rd / $rr" | bc -l)"
done
