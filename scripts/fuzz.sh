#!/usr/bin/env bash
# Builds cryo's fuzz targets (tests/fuzz) with clang, libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer in build-fuzz/, then runs
# each for SECONDS (default 30) from its seeds (tests/fuzz/corpus/).  With
# SEED, libFuzzer's random choices start from it, so that a run is repeated
# (the test suite runs with seed 1); without, each run explores afresh.  Exits
# non-zero, keeping the input that did it in build-fuzz/, if any target
# crashes, leaks or trips a sanitizer.  The test suite runs it (Fuzz.Parsers).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
seed=${2:-0}
command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
# -O1 with line tables: quicker to build than -O2, and enough for the
# sanitizers to name the line.
cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Fuzz \
      -DCMAKE_C_FLAGS="-O1 -gline-tables-only" -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
      -DCRYO_FUZZ=ON -DCRYO_BUILD_TESTS=OFF -DCRYO_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz --target fuzz_targets
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in request manifest record images; do
  # A copy of the seeds: what the run finds stays out of the tree.
  mkdir "$work/$t"
  cp tests/fuzz/corpus/"$t"/* "$work/$t"/ 2>/dev/null || true
  echo "fuzz: $t for ${secs} s" >&2
  build-fuzz/tests/fuzz/fuzz_"$t" -max_total_time="$secs" -seed="$seed" -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="build-fuzz/crash-$t-" "$work/$t" 2>"$work/$t.log" || {
    tail -n 60 "$work/$t.log" >&2
    echo "fuzz: fuzz_$t failed; the input is in build-fuzz/crash-$t-*" >&2
    exit 1
  }
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$work/$t.log" | sed "s/^/fuzz: $t /" >&2
done
