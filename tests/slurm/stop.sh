#!/usr/bin/env bash
# Stop the daemons tests/slurm/start.sh started, by the PIDs it recorded, newest first.
# Usage: tests/slurm/stop.sh STATE_DIR
set -uo pipefail
STATE=$1
PIDS="$STATE/pids"
[[ -f "$PIDS" ]] || { echo "no $PIDS: nothing to stop"; exit 0; }
# Cancel what is left in the queue first, so no job step outlives its slurmd.
if grep -q '^slurmctld ' "$PIDS"; then
    timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
    sleep 1
fi
tac "$PIDS" | while read -r name pid; do
    [[ -n "${pid:-}" ]] || continue
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "$name (pid $pid) already gone"
        continue
    fi
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    echo "stopped $name (pid $pid)"
done
mv "$PIDS" "$PIDS.stopped"
# Put back the configuration start.sh moved aside (ours is removed).
for f in slurm.conf gres.conf slurmdbd.conf; do
    if grep -qsF "# written by gpvae tests/slurm/start.sh" "/etc/slurm/$f"; then
        rm -f "/etc/slurm/$f"
    fi
    if [[ -e "$STATE/etc-backup/$f" ]]; then
        mv "$STATE/etc-backup/$f" "/etc/slurm/$f"
        echo "restored /etc/slurm/$f"
    fi
done
