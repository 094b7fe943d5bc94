#!/usr/bin/env bash
# Set up cryo on a fresh Debian 12 machine, as root: build dependencies,
# Slurm, MPI and the container engines the tests use, a working CRIU >= 4.2
# (scripts/install-criu.sh) and Apptainer (scripts/install-apptainer.sh),
# a tmpfs with huge pages as the fast tier (scripts/mount-fast-tier.sh),
# then build cryo and install it into /usr/local/bin.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup: run as root (CRIU needs it)" >&2; exit 1; }

pkgs=(build-essential cmake ninja-build pkg-config protobuf-compiler libprotobuf-dev
      libcli11-dev libtomlplusplus-dev help2man nlohmann-json3-dev libfmt-dev libxxhash-dev libzstd-dev libssl-dev libfuse3-dev libgtest-dev libbenchmark-dev libgmock-dev
      criu libprotobuf-c1 libnl-3-200 libnet1 libgnutls30 libnftables1 libbsd0 libuuid1
      iproute2 iptables bc procps slurmctld slurmd slurm-client munge
      openmpi-bin libopenmpi-dev mpich libmpich-dev hpcc scalapack-mpi-test
      podman runc containernetworking-plugins docker.io busybox-static squashfs-tools patchelf
      clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/install-criu.sh
scripts/install-apptainer.sh
scripts/mount-fast-tier.sh || echo "setup: the fast tier keeps small pages for now" >&2

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build
cmake --install build --prefix /usr/local >/dev/null
echo "setup: cryo installed in /usr/local/bin; 'cryo check' says:" >&2
/usr/local/bin/cryo check
