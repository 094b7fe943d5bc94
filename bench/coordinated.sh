#!/usr/bin/env bash
# What a coordinated checkpoint of a multi-node job costs as the number of
# nodes grows: an Open MPI ring with one rank per part, each part on its
# own agent, the parts' network namespaces on one bridge (the nodes of
# this machine), for 1, 2 and 4 parts.  Interleaved, with the same idle
# time before each checkpoint, -r repetitions; prints the median time of
# each phase (prepare: every network locked; dump: every part dumped and
# in the store; commit: every part verified and the job's manifest
# written) and writes every sample as JSON.  docs/mpi.md has the results
# and what they say about 1,000 nodes.
#
#   bench/coordinated.sh [-p "1 2 4"] [-r 3] [-i 3] [-o FILE.json]
set -euo pipefail
cd "$(dirname "$0")/.."
parts="1 2 4" reps=3 idle=3 out=""
while getopts "p:r:i:o:" o; do
  case $o in p) parts=$OPTARG ;; r) reps=$OPTARG ;; i) idle=$OPTARG ;; o) out=$OPTARG ;; *) sed -n '2,15p' "$0"; exit 2 ;; esac
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
out=${out:-bench/results/coordinated-$(hostname)-$(date +%Y%m%d-%H%M).json}
ring=$PWD/build/tests/progs/ring_openmpi
[ -x "$ring" ] || { echo "bench: build cryo first (scripts/setup.sh)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/cryo-coord-bench-XXXXXX)
export CRYO_STORE=$work/store CRYO_FAST_TIER=/dev/shm/cryo-coord-bench
bridge=cbench$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for ns in $(ip netns list | awk '/^cryo-cb/ {print $1}'); do ip netns pids "$ns" | xargs -r kill -9; ip netns del "$ns"; done
  iptables -w -D FORWARD -i $bridge -o $bridge -j ACCEPT 2>/dev/null || true
  ip link del $bridge 2>/dev/null || true
  rm -rf "$work" "$CRYO_FAST_TIER"
}
trap cleanup EXIT
ip link add $bridge type bridge && ip link set $bridge up
iptables -w -I FORWARD -i $bridge -o $bridge -j ACCEPT

field() { sed -n "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/p" "$2" | head -1; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
declare -A S
printf '%-6s %10s %10s %10s %10s %10s\n' parts prepare_s dump_s commit_s total_s frozen_s
rows=()
for n in $parts; do
  agents=""
  for k in $(seq "$n"); do
    cryo agent --listen 127.0.0.1:0 --node b$k --announce "$work/agent-$n-$k" > "$work/agent-$n-$k.log" 2>&1 & pids+=($!)
  done
  for k in $(seq "$n"); do
    until [ -s "$work/agent-$n-$k" ]; do sleep 0.05; done
    agents+="${agents:+,}$(cut -d' ' -f2 "$work/agent-$n-$k")"
  done
  job=cb$n
  cryo run --quiet --name $job --agents "$agents" --bridge $bridge -- mpirun -np "$n" --map-by node "$ring" 100000 50 \
    > "$work/$job.out" 2>&1 & sup=$!
  until grep -q "^round 20 " "$CRYO_STORE/$job/stdout.log" 2>/dev/null; do sleep 0.1; done
  for r in $(seq "$reps"); do
    sleep "$idle"
    j=$(cryo checkpoint $job --json)
    id=$(sed -n 's/.*"id": "\([0-9]*\)".*/\1/p' <<<"$j")
    m=$CRYO_STORE/$job/checkpoints/$id/manifest.json
    prep=$(field prepare "$m"); dump=$(field dump "$m"); total=$(field durable_seconds "$m")
    S[$n,prepare]+=" $prep"; S[$n,dump]+=" $dump"; S[$n,total]+=" $total"
    S[$n,commit]+=" $(printf '%.6f' "$(echo "$total - $prep - $dump" | bc -l)")"; S[$n,frozen]+=" $(field frozen_seconds "$m")"
  done
  kill $sup; wait $sup 2>/dev/null || true
  row="$(median ${S[$n,prepare]}) $(median ${S[$n,dump]}) $(median ${S[$n,commit]}) $(median ${S[$n,total]}) $(median ${S[$n,frozen]})"
  printf '%-6s %10.3f %10.3f %10.3f %10.3f %10.3f\n' "$n" $row
  read -r p d c t f <<<"$row"
  rows+=("{\"parts\": $n, \"prepare_s\": $p, \"dump_s\": $d, \"commit_s\": $c, \"total_s\": $t, \"frozen_s\": $f, \"samples\": {\"total\": [$(echo ${S[$n,total]} | tr ' ' ',')]}}")
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pids=()
  sleep 1
done
(IFS=,; echo "{\"host\": \"$(hostname)\", \"date\": \"$(date -Is)\", \"reps\": $reps, \"rows\": [${rows[*]}]}") > "$out"
echo "bench: results in $out"
