#!/usr/bin/env bash
# Install Debian's SLURM (controller, node daemon, client), munge and accounting (slurmdbd +
# MariaDB) for the single-node test cluster. Needs root and apt-get; idempotent.
set -euo pipefail
PKGS=(slurm-wlm slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
need=0
for bin in slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged mariadbd; do
    command -v "$bin" >/dev/null 2>&1 || need=1
done
if [[ $need -eq 0 ]]; then
    echo "SLURM, munge and MariaDB already installed"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Daemons must not be started by the packages' scripts: we start them by hand (no systemd).
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.gpvae
cleanup() { rm -f /usr/sbin/policy-rc.d; }
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    mv /usr/sbin/policy-rc.d.gpvae /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap cleanup EXIT
else
    rm -f /usr/sbin/policy-rc.d.gpvae
fi
apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
echo "installed: ${PKGS[*]}"
