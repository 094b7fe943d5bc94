# Helpers shared by the bench scripts (sourced, not run).

# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
# Waits until a line of FILE matches the extended regular expression RE, at
# most TIMEOUT seconds (600).  It starts no process: a loop of grep and
# sleep every 10 ms kept most of a core busy on these 2-core VMs, and the
# restores and flushes being timed ran slower by that (bench/NOTES.md,
# "The benchmark's own polling").  The pause is a read with a timeout on a
# FIFO that nobody writes.
wait_line() {  # FILE RE [TIMEOUT]
  local end=$(( SECONDS + ${3:-600} )) line
  if [ -z "${_nap_fd:-}" ]; then
    local fifo; fifo=$(mktemp -u /tmp/cryo-bench-nap-XXXXXX)
    mkfifo -m 600 "$fifo"; exec {_nap_fd}<>"$fifo"; rm -f "$fifo"
  fi
  while :; do
    if [ -r "$1" ]; then
      while IFS= read -r line || [ -n "$line" ]; do
        [[ $line =~ $2 ]] && return 0
      done < "$1"
    fi
    (( SECONDS < end )) || { echo "bench: no '$2' in $1" >&2; exit 1; }
    read -r -t 0.05 -u "$_nap_fd" line || true
  done
}
# Makes memory recently used before a timed step: writes and removes a
# file of 1.25 times MIB in the tmpfs DIR.  These VMs hand out memory not
# used lately slowly, and which side of a comparison gets it is otherwise a
# lottery (bench/NOTES.md, "Touching the memory first").
warm_memory() {  # DIR MIB
  dd if=/dev/zero of="$1/warm" bs=1M count=$(( $2 * 5 / 4 )) status=none
  rm -f "$1/warm"
}
# The first number called KEY in a JSON text.
json_num() { sed -n "s/.*\"$2\": *\([0-9.e+-]*\).*/\1/p" <<<"$1" | head -1; }
# Writes the results to OUT: the host, the date, the kernel, then the JSON
# fields given (text such as '"reps": 3,'), the rows (the json_rows array
# of JSON objects) and every sample (the associative array S, keys to
# space-separated numbers).
write_results() {  # OUT HEADER-FIELDS
  {
    echo "{\"host\": \"$(hostname)\", \"date\": \"$(date -Is)\", \"kernel\": \"$(uname -r)\", $2"
    echo " \"rows\": ["
    (IFS=,; echo "  ${json_rows[*]}")
    echo " ], \"samples\": {"
    local first=1 k
    for k in "${!S[@]}"; do
      [ $first = 1 ] || echo ","
      first=0
      printf '  "%s": [%s]' "$k" "$(echo ${S[$k]} | tr ' ' ',')"
    done
    echo; echo " }}"
  } > "$1"
  echo "bench: results in $1"
}
