#!/usr/bin/env bash
# cryo against itself with one environment setting changed, or against
# another build of cryo: how the choices in bench/NOTES.md are measured.
#
#   bench/ab.sh -e VAR=VALUE [-s "256 1024"] [-k "random halfzero matrix"] [-r 6] [-i 3] [-w] [-t DIR] [-o FILE.json]
#   bench/ab.sh -c OTHER/build/src/cryo [...]
#
# For each size (MiB) and kind of memory (tests/progs/memhog.c), -r times:
# start two memhog jobs, "a" with VAR=VALUE in its environment (its
# supervisor, and so its checkpoint workers, see it), or run by the cryo
# that -c names (with the cryo-init beside it, and a store of its own),
# and "b" as the cryo on PATH runs it; idle -i seconds, take each one's
# first checkpoint with 'cryo checkpoint --wait' (who goes first
# alternates: the second of a pair gets the memory the first just freed,
# which these VMs hand out faster than fresh; with -w, memory made
# recently used before each, as checkpoint_vs_criu.sh -w does), then stop
# and remove both.  Prints medians of the frozen time and the time until
# durable, with a/b ratios, and writes every sample as JSON (-o, default
# bench/ab-HOST-DATE.json).  The fast tier is a directory made under -t
# (default /dev/shm/cryo, cryo's default fast tier).  Needs root and
# scripts/setup.sh done.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
setting="" other="" sizes="256 1024" kinds="random halfzero matrix" reps=6 idle=3 out="" tdir=/dev/shm/cryo warm=0
while getopts "e:c:s:k:r:i:wt:o:" o; do
  case $o in
    e) setting=$OPTARG ;; c) other=$OPTARG ;; s) sizes=$OPTARG ;; k) kinds=$OPTARG ;; r) reps=$OPTARG ;; i) idle=$OPTARG ;;
    w) warm=1 ;;
    t) tdir=$OPTARG ;; o) out=$OPTARG ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
  esac
done
[ -z "$other" ] || [ -x "$other" ] || { echo "bench: $other is not an executable cryo" >&2; exit 2; }
[[ -n $other || $setting == *=* ]] || { echo "bench: give the setting to compare (-e CRYO_FOLLOW=0) or another build (-c DIR/cryo)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
out=${out:-bench/ab-$(hostname)-$(date +%Y%m%d-%H%M).json}
memhog=$PWD/build/tests/progs/memhog
[ -x "$memhog" ] || { echo "bench: build cryo first (scripts/setup.sh)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/cryo-ab-XXXXXX)
mkdir -p "$tdir"
shm=$(mktemp -d "$tdir/ab-XXXXXX")
export CRYO_STORE=$work/store CRYO_FAST_TIER=$shm/fast
cleanup() {
  for p in $(cat "$work"/*.sup 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  pkill -9 -f "^$memhog $work" 2>/dev/null || true
  rm -rf "$work" "$shm"
}
trap cleanup EXIT

declare -A S   # S[size,kind,side,metric] = "v1 v2 ..."
add() { S[$1,$2,$3,$4]="${S[$1,$2,$3,$4]:-} $5"; }

# cryo as side a or b: every command of side a sees the setting (a fast
# tier of its own, say, must be known to its 'cryo rm' too).
side() {  # SIDE CRYO-ARGS...
  local s=$1; shift
  if [ "$s" = b ]; then cryo "$@"
  elif [ -n "$other" ]; then env ${setting:+"$setting"} CRYO_STORE="$work/store-a" "$other" "$@"
  else env "$setting" cryo "$@"; fi
}

checkpoint() {  # MIB KIND SIDE NAME
  local j; j=$(side "$3" checkpoint "$4" --wait --json)
  add "$1" "$2" "$3" frozen "$(json_num "$j" frozen_seconds)"
  add "$1" "$2" "$3" durable "$(json_num "$j" durable_seconds)"
}

printf '%-6s %-9s %-10s %10s %10s %7s\n' size kind row a b a/b
json_rows=()
for mib in $sizes; do
  for kind in $kinds; do
    for r in $(seq "$reps"); do
      for side in a b; do
        name=$side$mib-$kind-$r
        side $side run --quiet --name "$name" -- "$memhog" "$work/go-$name" "$mib" "$kind" &
        echo $! > "$work/$side.sup"
        store=$CRYO_STORE; [ "$side" = a ] && [ -n "$other" ] && store=$work/store-a
        wait_line "$store/$name/stdout.log" READY
      done
      sleep "$idle"
      order="a b"; (( r % 2 )) || order="b a"
      for side in $order; do
        (( warm )) && warm_memory "$shm" "$mib"
        checkpoint "$mib" "$kind" "$side" "$side$mib-$kind-$r"
        sleep "$idle"
      done
      for side in a b; do
        name=$side$mib-$kind-$r
        side $side checkpoint "$name" --stop --json > /dev/null
        wait "$(cat "$work/$side.sup")" || true
        side $side rm "$name" > /dev/null
      done
    done
    for metric in frozen durable; do
      a=$(median ${S[$mib,$kind,a,$metric]}) b=$(median ${S[$mib,$kind,b,$metric]})
      ratio=$(printf '%.3f' "$(echo "$a / $b" | bc -l)")
      printf '%-6s %-9s %-10s %10.3f %10.3f %7.2f\n' "${mib}M" "$kind" "$metric" "$a" "$b" "$ratio"
      json_rows+=("{\"size_mib\": $mib, \"kind\": \"$kind\", \"row\": \"$metric (s)\", \"a\": $a, \"b\": $b, \"ratio\": $ratio}")
    done
  done
done

a_is=$setting
[ -n "$other" ] && a_is="$other ($("$other" --version 2>&1 | head -1))${setting:+ with $setting}"
write_results "$out" "\"a\": \"$a_is\", \"b\": \"$(cryo --version 2>&1 | head -1)\", \"reps\": $reps, \"warm\": $warm, \"idle_s\": $idle,"
