# Sourced by the install-*.sh scripts: fetch binary packages from Debian
# suites newer than this machine's (unstable, trixie) without touching the
# system's apt configuration.
#
#   archive_init            reads the suites' package lists into a private apt state
#   archive_pick PKG SUITE  prints PKG=VERSION as SUITE has it
#   archive_download DIR PKG=VERSION...
# The caller sets `say` and removes $archive_work when done.

archive_init() {
  local url
  url=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$url" ] || url=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$url" ] || { say "cannot find the Debian archive URL in /etc/apt"; exit 1; }
  archive_work=$(mktemp -d)
  mkdir -p "$archive_work/lists/partial" "$archive_work/cache/archives/partial"
  cat > "$archive_work/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $url unstable main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $url trixie main
SRC
  archive_opts=(-o APT::Sandbox::User=root -o "Dir::Etc::sourcelist=$archive_work/sources.list" -o Dir::Etc::sourceparts=-
                -o "Dir::State::Lists=$archive_work/lists" -o "Dir::Cache=$archive_work/cache")
  say "reading the package lists of Debian unstable and trixie"
  apt-get "${archive_opts[@]}" update >/dev/null
}

archive_pick() {
  local v
  v=$(apt-cache "${archive_opts[@]}" madison "$1" | awk -v s="$2" '$0 ~ s"/main" {print $3; exit}')
  [ -n "$v" ] || { say "no $1 in $2"; exit 1; }
  printf '%s=%s\n' "$1" "$v"
}

archive_download() {
  local dir=$1; shift
  mkdir -p "$dir"
  say "downloading $*"
  (cd "$dir" && apt-get "${archive_opts[@]}" download "$@" >/dev/null)
}
