# Helpers shared by the bench scripts (sourced, not run).

# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
# Waits until FILE holds TEXT, at most TIMEOUT seconds (600).
wait_line() {  # FILE TEXT [TIMEOUT]
  local t=0
  until grep -q "$2" "$1" 2>/dev/null; do
    sleep 0.01; t=$((t + 1))
    [ $t -lt $(( ${3:-600} * 100 )) ] || { echo "bench: no '$2' in $1" >&2; exit 1; }
  done
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
