#!/usr/bin/env bash
# Provide a working CRIU >= 4.2 without touching the system's packages.
#
# Debian 12's criu 3.17 cannot run on kernels with the [vvar_vclock] mapping,
# and 4.1.1 cannot dump sockets on kernels >= 6.16.  This
# script unpacks the newest CRIU that Debian's archive offers (the unstable
# suite) into a private prefix, together with the newer libc it needs, and
# writes a wrapper that runs it through that prefix's own dynamic loader.
#
#   scripts/install-criu.sh [PREFIX]      default PREFIX: /opt/cryo/criu
#
# Afterwards PREFIX/bin/criu is a working CRIU.  If the system's own CRIU
# already passes `criu check`, nothing is downloaded and the wrapper simply
# points at it.
set -euo pipefail

prefix=${1:-/opt/cryo/criu}
min_version=40200  # 4.2.0

say() { printf 'install-criu: %s\n' "$*" >&2; }

criu_version_code() {  # prints e.g. 40201 for "Version: 4.2.1"
  "$1" --version 2>/dev/null | awk '/^Version:/ {split($2, v, "."); printf "%d\n", v[1]*10000 + v[2]*100 + v[3]}'
}

works() {  # $1: a criu binary; succeeds when it is new enough and `criu check` passes
  local code
  code=$(criu_version_code "$1") || return 1
  [ -n "$code" ] && [ "$code" -ge "$min_version" ] && "$1" check >/dev/null 2>&1
}

# The wrappers run with sh -p: a CRIU that cryo starts for a user may run
# with her real uid and root's effective uid (docs/security.md), which a
# plain sh would give up.
if [ -x "$prefix/bin/criu" ] && works "$prefix/bin/criu"; then
  [ "$(head -n1 "$prefix/bin/criu")" = '#!/bin/sh -p' ] || sed -i '1s|.*|#!/bin/sh -p|' "$prefix/bin/criu"
  say "CRIU $("$prefix/bin/criu" --version | awk '/^Version:/{print $2}') already works at $prefix/bin/criu"
  exit 0
fi

mkdir -p "$prefix/bin"
if command -v criu >/dev/null && [ "$(command -v criu)" != "$prefix/bin/criu" ] && works "$(command -v criu)"; then
  sys=$(command -v criu)
  say "the system's CRIU at $sys works; using it"
  printf '#!/bin/sh -p\nexec %s "$@"\n' "$sys" > "$prefix/bin/criu"
  chmod 755 "$prefix/bin/criu"
  exit 0
fi

# The host's own libraries that CRIU links against (same sonames in Debian 12),
# and the system criu package for /usr/include/criu/rpc.proto.
need=(criu libprotobuf-c1 libgnutls30 libnftables1 libbsd0 libuuid1 libnl-3-200)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

. "$(dirname "$0")/debian-archive.sh"
archive_init
trap 'rm -rf "$archive_work"' EXIT
# criu and the libraries newer than Debian 12's from unstable, libc6 from
# trixie (it is the oldest libc these libraries accept).
archive_download "$archive_work/debs" "$(archive_pick criu unstable)" "$(archive_pick libcompel1 unstable)" \
  "$(archive_pick libnet9 unstable)" "$(archive_pick libnl-3-200 unstable)" "$(archive_pick libc6 trixie)"

rm -rf "$prefix/root"
mkdir -p "$prefix/root"
for d in "$archive_work"/debs/*.deb; do dpkg-deb -x "$d" "$prefix/root"; done

lib=$prefix/root/usr/lib/x86_64-linux-gnu
cat > "$prefix/bin/criu" <<WRAP
#!/bin/sh -p
# CRIU from Debian unstable, run through its own libc (written by install-criu.sh)
exec $lib/ld-linux-x86-64.so.2 --library-path $lib:/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu $prefix/root/usr/sbin/criu "\$@"
WRAP
chmod 755 "$prefix/bin/criu"

if ! works "$prefix/bin/criu"; then
  say "the unpacked CRIU does not pass 'criu check':"
  "$prefix/bin/criu" check >&2 || true
  exit 1
fi
say "CRIU $("$prefix/bin/criu" --version | awk '/^Version:/{print $2}') installed at $prefix/bin/criu"
