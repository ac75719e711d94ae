#!/bin/sh
# A one-node SLURM on this machine, for the slow test of `netsurgeon compare --executor slurm`
# (tests/compare/test_slurm.py). Needs root. Debian/Ubuntu: installs slurm-wlm and munge when missing,
# writes /etc/slurm/slurm.conf for this host (every CPU, one partition "debug", jobs requeueable, no
# cgroups, no accounting), then starts munged, slurmctld and slurmd.
#
#   scripts/slurm-single-node.sh start    # install if needed, configure, start; waits until the node is idle
#   scripts/slurm-single-node.sh stop     # stop the three daemons
#   scripts/slurm-single-node.sh status
set -eu
action="${1:-start}"
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"

stop() {  # the daemons this script started (their pid files), waiting until each has exited
    for name in slurmd slurmctld munged; do
        pid="$(cat "/run/$name.pid" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
            for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "/run/$name.pid"
    done
}

case "$action" in
stop) stop; exit 0 ;;
status) sinfo && squeue; exit $? ;;
start) ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then echo "$0: needs root (it installs packages and starts daemons)" >&2; exit 1; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key

cat > /etc/slurm/slurm.conf <<CONF
# written by netsurgeon scripts/slurm-single-node.sh
ClusterName=netsurgeon
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobRequeue=1
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=2
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF

stop
runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
cp /run/munge/munged.pid /run/munged.pid
/usr/sbin/slurmctld -c  # a clean state: no jobs left from an earlier start
/usr/sbin/slurmd
for _ in $(seq 1 60); do
    state="$(sinfo -h -n "$host" -o %T 2>/dev/null || true)"
    case "$state" in
    drain*|down*) scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    idle*|mixed*|allocated*) echo "slurm: node $host $state ($cpus CPUs)"; exit 0 ;;
    esac
    sleep 1
done
echo "$0: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
