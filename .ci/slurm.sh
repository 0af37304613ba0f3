#!/usr/bin/env bash
# Start a one-node SLURM cluster on 127.0.0.1 for the tests of examples/cluster/ (tests/test_slurm.py):
# munge, slurmctld and slurmd from Debian's packages (slurm-wlm, munge), a minimal slurm.conf in
# a folder of its own. Prints that slurm.conf's path (export it as SLURM_CONF); idempotent.
# Usage: SLURM_CONF=$(bash .ci/slurm.sh [FOLDER])   (default FOLDER /tmp/srnas-slurm)
set -euo pipefail
dir=${1:-/tmp/srnas-slurm}
node=$(hostname -s)
conf="$dir/etc/slurm.conf"
mkdir -p "$dir/etc" "$dir/state" "$dir/spool"

# munge: the key Debian's package made, the daemon as its own user.
if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
fi

# Four CPU slots whatever the machine has (config_overrides): a 3-task array runs at once.
cat > "$conf" <<CONF
ClusterName=srnas-ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
JobRequeue=1
KillWait=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=ci Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$conf"
pgrep -x slurmctld >/dev/null || slurmctld -f "$conf"
pgrep -x slurmd >/dev/null || slurmd -f "$conf"
for _ in $(seq 1 30); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "$conf"
        exit 0
    fi
    sleep 1
done
echo "slurm did not come up: see $dir/slurmctld.log and $dir/slurmd.log" >&2
exit 1
