#!/usr/bin/env bash
# A real Slurm cluster on this machine, for tests and for trying cryo's Slurm
# support: munged, slurmctld and N slurmd (nodes n1..nN), all from Debian's
# packages, with their own configuration, ports and state under one
# directory.  The system's /etc/slurm is not touched.
#
#   scripts/slurm-cluster.sh up [--nodes N]   start it (default 2 nodes); idempotent
#   scripts/slurm-cluster.sh down             stop every daemon it started, by PID
#   scripts/slurm-cluster.sh status           show the daemons and sinfo
#   scripts/slurm-cluster.sh env              print 'export SLURM_CONF=...'
#
# Slurm's commands find the cluster through SLURM_CONF (see 'env').  The
# directory is $CRYO_SLURM_DIR, default /run/cryo-slurm.  Run as root.
set -euo pipefail

dir=${CRYO_SLURM_DIR:-/run/cryo-slurm}
conf=$dir/slurm.conf
ctld_port=${CRYO_SLURM_PORT:-16817}

die() { echo "slurm-cluster: $*" >&2; exit 1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  local missing=()
  for p in slurmctld slurmd slurm-client munge; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  echo "slurm-cluster: installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages enable system services on the default configuration; this
  # cluster does not use them.
  systemctl disable --now slurmctld slurmd munge >/dev/null 2>&1 || true
}

write_config() {
  local nodes=$1 host
  host=$(hostname -s)
  mkdir -p "$dir/ctld" "$dir/spool"
  cat >"$conf" <<EOF
# Written by cryo's scripts/slurm-cluster.sh: a test cluster on localhost.
ClusterName=cryo
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A short credential lifetime also shortens how long a requeued job is held.
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
# Each job's processes, and whatever cryo restores for it, in the job's
# cgroups: scancel ends them all, and its limits apply (docs/security.md).
# Memory is scheduled, so that --mem is the job's cgroup's limit; a job
# that asks for none gets 3000 MB per CPU.
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=3000
SchedulerType=sched/backfill
# Schedule often, so that a requeued job starts as soon as its hold ends.
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
JobRequeue=1
ReturnToService=2
MinJobAge=600
KillWait=30
InactiveLimit=0
SlurmdTimeout=60
# Accounting gathers from the job's cgroups, where cryo's restored
# processes are: sstat sees them (no database: sacct has nothing).
JobAcctGatherType=jobacct_gather/cgroup
JobAcctGatherFrequency=task=5
AccountingStorageType=accounting_storage/none
EOF
  cat > "$dir/cgroup.conf" <<CGEOF
CgroupPlugin=autodetect
CgroupMountpoint=/sys/fs/cgroup
CgroupAutomount=no
IgnoreSystemd=yes
ConstrainCores=no
ConstrainRAMSpace=yes
ConstrainDevices=no
CGEOF
  for i in $(seq 1 "$nodes"); do
    echo "NodeName=n$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$((ctld_port + 100 + i)) CPUs=2 RealMemory=8000 State=UNKNOWN" >>"$conf"
  done
  # Jobs in 'urgent' preempt jobs in 'debug'.  The preempted job gets its
  # --signal (preempt_send_user_signal) and GraceTime seconds to checkpoint, then is
  # cancelled unless it requeued itself, as cryo does.
  cat >>"$conf" <<EOF
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
SlurmctldParameters=preempt_send_user_signal
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE OverSubscribe=NO PriorityTier=1 GraceTime=60 State=UP
PartitionName=urgent Nodes=ALL MaxTime=INFINITE OverSubscribe=NO PriorityTier=2 PreemptMode=OFF State=UP
EOF
  echo "$nodes" >"$dir/nodes"
}

up() {
  local nodes=2
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) nodes=$2; shift 2 ;;
      *) die "unknown option '$1' (use --nodes N)" ;;
    esac
  done
  [ "$(id -u)" = 0 ] || die "run as root"
  install_packages
  if alive "$dir/slurmctld.pid"; then
    [ "$(cat "$dir/nodes" 2>/dev/null)" = "$nodes" ] || die "already up with $(cat "$dir/nodes") nodes; run 'down' first"
  else
    mkdir -p "$dir"
    write_config "$nodes"
  fi

  # munged, as the munge user, with its own socket, key and logs.
  install -d -o munge -g munge -m 0755 "$dir/munge"
  if ! alive "$dir/munge/munged.pid"; then
    local key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then
      key=$dir/munge/munge.key
      [ -s "$key" ] || runuser -u munge -- mungekey --create --keyfile="$key"
    fi
    runuser -u munge -- munged --socket="$dir/munge/munge.socket" --key-file="$key" \
      --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  fi

  export SLURM_CONF=$conf
  alive "$dir/slurmctld.pid" || slurmctld -f "$conf"
  for i in $(seq 1 "$nodes"); do
    mkdir -p "$dir/spool/n$i"
    alive "$dir/slurmd-n$i.pid" || slurmd -f "$conf" -N "n$i"
  done

  # Up means every node is idle and takes jobs.
  local deadline=$((SECONDS + 60)) idle=0
  while [ $SECONDS -lt $deadline ]; do
    idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)
    [ "$idle" -ge "$nodes" ] && break
    sleep 0.2
  done
  [ "$idle" -ge "$nodes" ] || { status >&2; die "nodes did not come up; see $dir/*.log"; }
  echo "slurm-cluster: up with $nodes node(s); export SLURM_CONF=$conf" >&2
}

down() {
  local pids=() f
  for f in "$dir"/slurmd-*.pid "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    alive "$f" && pids+=("$(cat "$f")")
  done
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  local p deadline=$((SECONDS + 20))
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$dir"
  echo "slurm-cluster: down" >&2
}

status() {
  local f
  for f in "$dir/munge/munged.pid" "$dir/slurmctld.pid" "$dir"/slurmd-*.pid; do
    [ -e "$f" ] || continue
    if alive "$f"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"; else echo "$(basename "$f" .pid): not running"; fi
  done
  [ -e "$conf" ] && SLURM_CONF=$conf sinfo -N 2>/dev/null || echo "no cluster in $dir"
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *) echo "usage: $0 up [--nodes N] | down | status | env" >&2; exit 2 ;;
esac
