#!/usr/bin/env bash
# Provide Apptainer, which cryo needs only to unpack SIF images ('cryo run
# --apptainer IMAGE.sif'; a sandbox directory needs nothing, and cryo runs
# every image itself: see src/job/apptainer.h) and which the tests use to
# build one.  No Debian 12 or 13 packages it; unstable's needs glibc >= 2.38.
# This unpacks unstable's apptainer with trixie's libc6 into a private
# prefix and points its binaries at that libc's loader (patchelf).  The
# system stays untouched.
#
#   scripts/install-apptainer.sh [PREFIX]     default PREFIX: /opt/cryo/apptainer
#
# Afterwards PREFIX/bin/apptainer works.  If an apptainer (or singularity)
# in PATH already works, nothing is downloaded.
set -euo pipefail
prefix=${1:-/opt/cryo/apptainer}
say() { printf 'install-apptainer: %s\n' "$*" >&2; }
works() { "$1" --silent version >/dev/null 2>&1; }

if [ -x "$prefix/bin/apptainer" ] && works "$prefix/bin/apptainer"; then
  say "Apptainer $("$prefix/bin/apptainer" --silent version) already works at $prefix/bin/apptainer"
  exit 0
fi
for n in apptainer singularity; do
  if command -v "$n" >/dev/null && works "$(command -v "$n")"; then
    say "the system's $n at $(command -v "$n") works; using it"
    mkdir -p "$prefix/bin"
    printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v "$n")" > "$prefix/bin/apptainer"
    chmod 755 "$prefix/bin/apptainer"
    exit 0
  fi
done

# What it runs with from Debian 12 (the same sonames), and to pack and
# unpack SIF images.
need=(patchelf squashfs-tools libseccomp2 libsqlite3-0 ca-certificates)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

. "$(dirname "$0")/debian-archive.sh"
archive_init
trap 'rm -rf "$archive_work"' EXIT
archive_download "$archive_work/debs" "$(archive_pick apptainer unstable)" "$(archive_pick libc6 trixie)"

rm -rf "$prefix"
mkdir -p "$prefix/root" "$prefix/bin"
for d in "$archive_work"/debs/*.deb; do dpkg-deb -x "$d" "$prefix/root"; done
usr=$prefix/root/usr
# Relocated, Apptainer looks for everything below its binary's prefix.
mkdir -p "$usr/etc"
mv "$prefix/root/etc/apptainer" "$usr/etc/apptainer"
mkdir -p "$usr/var/lib/apptainer/mnt/session" "$usr/lib/var/lib/apptainer/mnt/session"
lib=$usr/lib/x86_64-linux-gnu
for f in "$usr/bin/apptainer" "$lib/apptainer/bin/starter"; do
  patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" \
           --set-rpath "$lib:/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu" "$f"
done
cat > "$prefix/bin/apptainer" <<WRAP
#!/bin/sh
# Apptainer from Debian unstable, on trixie's libc (written by install-apptainer.sh)
exec $usr/bin/apptainer "\$@"
WRAP
chmod 755 "$prefix/bin/apptainer"
if ! works "$prefix/bin/apptainer"; then
  say "the unpacked Apptainer does not run:"
  "$prefix/bin/apptainer" version >&2 || true
  exit 1
fi
say "Apptainer $("$prefix/bin/apptainer" --silent version) installed at $prefix/bin/apptainer"
