#!/usr/bin/env bash
# Start a single-node SLURM cluster with accounting on localhost, for tests:
#   munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd, one fake GPU (GRES gpu:1).
# Usage: tests/slurm/start.sh STATE_DIR
# Databases, spool, logs and PIDs live in STATE_DIR; the daemons it starts are listed as
# "name pid" lines in STATE_DIR/pids, so tests/slurm/stop.sh can stop exactly those. The
# configuration goes where every SLURM client finds it, /etc/slurm (job steps started inside a
# job drop SLURM_CONF); files already there are moved to STATE_DIR/etc-backup and put back by
# stop.sh.
# The node advertises 16 CPUs / 64 GB / 1 GPU whatever the machine has (config_overrides), so
# the repository's slurm profile (sized for real nodes) is submitted unchanged.
set -euo pipefail
STATE=$(mkdir -p "$1" && cd "$1" && pwd)
HOST=$(hostname -s)
CLUSTER=gpvaetest
ACCOUNT=${GPVAE_SLURM_ACCOUNT:-gpvae}
CTLD_PORT=${GPVAE_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${GPVAE_SLURMD_PORT:-16818}
DBD_PORT=${GPVAE_SLURMDBD_PORT:-16819}
DB_PORT=${GPVAE_MARIADB_PORT:-16306}
ETC=/etc/slurm
MARK="# written by gpvae tests/slurm/start.sh"
mkdir -p "$STATE"/{etc-backup,log,ctld,slurmd,mysql,run} "$ETC"
chmod 755 "$STATE"
PIDS="$STATE/pids"
: > "$PIDS"
unset SLURM_CONF
for f in slurm.conf gres.conf slurmdbd.conf; do
    if [[ -e "$ETC/$f" ]] && ! grep -qF "$MARK" "$ETC/$f"; then
        mv "$ETC/$f" "$STATE/etc-backup/$f"
        echo "moved the existing $ETC/$f to $STATE/etc-backup/"
    fi
done

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
    local limit=$1 what=$2; shift 2
    for _ in $(seq 1 $((limit * 4))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    echo "timed out after ${limit}s waiting for $what; logs in $STATE/log" >&2
    tail -n 20 "$STATE"/log/*.log >&2 || true
    return 1
}
started() { echo "$1 $2" >> "$PIDS"; echo "started $1 (pid $2)"; }

# --- munge (reuse a running one: it may serve other software on this machine) ---
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "munged already running; reusing it"
else
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 600 /etc/munge/munge.key
    fi
    runuser -u munge -- munged --foreground --force > "$STATE/log/munged.log" 2>&1 &
    started munged $!
    wait_for 20 munged sh -c 'munge -n | unmunge'
fi

# --- MariaDB for accounting (own data dir and port, never the system's database) ---
mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql" \
    --auth-root-authentication-method=socket > "$STATE/log/mariadb-install.log" 2>&1
mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --socket="$STATE/run/mysql.sock" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadbd.pid" \
    --innodb-buffer-pool-size=64M --log-error="$STATE/log/mariadbd.log" > /dev/null 2>&1 &
started mariadbd $!
wait_for 60 mariadbd mariadb-admin --no-defaults --socket="$STATE/run/mysql.sock" ping
mariadb --no-defaults --socket="$STATE/run/mysql.sock" -u root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

# --- SLURM configuration ---
cat > "$ETC/slurm.conf" <<CONF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
MpiDefault=none
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=16 Boards=1 SocketsPerBoard=1 CoresPerSocket=16 ThreadsPerCore=1 RealMemory=65536 Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
CONF
printf '%s\nNodeName=%s Name=gpu File=/dev/null\n' "$MARK" "$HOST" > "$ETC/gres.conf"
cat > "$ETC/slurmdbd.conf" <<CONF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 "$ETC/slurmdbd.conf"

# --- slurmdbd, then the cluster, account and user associations ---
slurmdbd -D > "$STATE/log/slurmdbd.out" 2>&1 &
started slurmdbd $!
wait_for 60 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" > /dev/null || true
sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description=gpvae-tests \
    organization=gpvae > /dev/null || true
sacctmgr -i add user "$(id -un)" account="$ACCOUNT" cluster="$CLUSTER" \
    defaultaccount="$ACCOUNT" > /dev/null || true

# --- slurmctld and slurmd ---
slurmctld -D -i > "$STATE/log/slurmctld.out" 2>&1 &
started slurmctld $!
wait_for 60 slurmctld scontrol ping
slurmd -D > "$STATE/log/slurmd.out" 2>&1 &
started slurmd $!
node_idle() { [[ "$(sinfo -h -n "$HOST" -o %T | head -n1)" == idle* ]]; }
if ! wait_for 30 "node $HOST idle" node_idle; then
    scontrol update nodename="$HOST" state=resume || true
    wait_for 30 "node $HOST idle after resume" node_idle
fi
sinfo
echo "SLURM test cluster up (configuration in $ETC, state in $STATE)"
