#!/usr/bin/env bash
# Mounts a tmpfs with huge pages as cryo's fast tier, as root:
#
#   scripts/mount-fast-tier.sh [DIR]      (default /dev/shm/cryo, cryo's default fast tier)
#
# CRIU dumps into a tmpfs with huge pages in half the time it takes with
# 4 KiB pages, and cryo reads the dump back and frees it 3 and 10 times
# faster (bench/NOTES.md).  The mount is open to every user, like
# /tmp (each job's directory is its own), and may hold up to half the
# memory, as cryo's own limit (--fast-tier-size) allows by default.  It
# does nothing if DIR is already a mount, and will not hide fast copies
# already in DIR.  The mount lasts until reboot; for good, add to /etc/fstab:
#
#   cryo-fast  /dev/shm/cryo  tmpfs  huge=within_size,size=50%,mode=1777  0 0
set -euo pipefail
dir=${1:-/dev/shm/cryo}
[ "$(id -u)" = 0 ] || { echo "mount-fast-tier: run as root" >&2; exit 1; }
if mountpoint -q "$dir"; then
  opts=$(findmnt -n -o FS-OPTIONS --mountpoint "$dir")
  case $opts in
    *huge=within_size*|*huge=always*) echo "mount-fast-tier: $dir is already a tmpfs with huge pages" >&2 ;;
    *) echo "mount-fast-tier: $dir is already a mount ($opts); left as it is" >&2 ;;
  esac
  exit 0
fi
if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  echo "mount-fast-tier: $dir holds jobs' fast copies; mounting over it would hide them." >&2
  echo "mount-fast-tier: run again once no job has one there ('cryo ls' shows the jobs)." >&2
  exit 1
fi
[ -d /sys/kernel/mm/transparent_hugepage ] || {
  echo "mount-fast-tier: this kernel has no transparent huge pages; the fast tier keeps small pages" >&2; exit 0; }
mkdir -p "$dir"
mount -t tmpfs -o huge=within_size,size=50%,mode=1777 cryo-fast "$dir"
echo "mount-fast-tier: $dir is a tmpfs with huge pages until reboot (for good: see the top of $0)" >&2
