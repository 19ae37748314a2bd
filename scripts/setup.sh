#!/usr/bin/env bash
# Sets up a fresh machine (Debian 12, root) for mesh: the system packages the daemon and the
# end-to-end tests use, the pinned Node from the npm registry, npm dependencies, and a build.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# systemd brings systemd-analyze, which verifies the units `mesh daemon|controller install` write;
# tmux runs the live `mesh status` dashboard in a real terminal in the end-to-end tests; binutils
# (strip) slims the single binary; hyperfine times the CLI in bench/cli; haproxy is the real load
# balancer in front of controller replicas in the tests (test/support/haproxy.ts).
for pkg_cmd in wireguard-go:wireguard-go wireguard-tools:wg iproute2:ip nftables:nft iperf3:iperf3 iputils-ping:ping procps:pgrep mandoc:mandoc coturn:turnutils_natdiscovery nebula:nebula systemd:systemd-analyze tmux:tmux binutils:strip hyperfine:hyperfine haproxy:haproxy; do
  command -v "${pkg_cmd#*:}" >/dev/null 2>&1 || need+=("${pkg_cmd%%:*}")
done
# postgresql: the real PostgreSQL the storage tests start on loopback (test/support/postgres.ts).
# Debian keeps its server binaries off PATH, in /usr/lib/postgresql/<major>/bin.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # coturn is here for its RFC 5780 client (turnutils_natdiscovery, a test reference for our
    # STUN server); its TURN server must not stay running or start at boot.
    if [[ " ${need[*]} " == *" coturn "* ]]; then
      systemctl disable --now coturn.service >/dev/null 2>&1 || true
      command -v deb-systemd-helper >/dev/null 2>&1 && deb-systemd-helper disable coturn.service >/dev/null 2>&1 || true
      command -v update-rc.d >/dev/null 2>&1 && update-rc.d coturn disable >/dev/null 2>&1 || true
      service coturn stop >/dev/null 2>&1 || true
    fi
    # postgresql creates a cluster (main, port 5432) and starts it, also at every boot; the tests
    # start throwaway servers of their own and nothing of mesh uses it. Stop it and mark it
    # manual in start.conf (Debian's per-cluster switch, read by the init script and by systemd's
    # postgresql@ generator), then disable the service as for coturn. Only when setup installed
    # the package: a cluster that was there before may be someone's database.
    if [[ " ${need[*]} " == *" postgresql "* ]]; then
      pg_lsclusters -h 2>/dev/null | while read -r ver cluster _port _status _rest; do
        pg_ctlcluster "$ver" "$cluster" stop -m fast >/dev/null 2>&1 || true
        sed -i -E 's/^auto$/manual/' "/etc/postgresql/$ver/$cluster/start.conf" 2>/dev/null || true
      done
      systemctl disable --now postgresql.service >/dev/null 2>&1 || true
      command -v deb-systemd-helper >/dev/null 2>&1 && deb-systemd-helper disable postgresql.service >/dev/null 2>&1 || true
      command -v update-rc.d >/dev/null 2>&1 && update-rc.d postgresql disable >/dev/null 2>&1 || true
      service postgresql stop >/dev/null 2>&1 || true
    fi
    # haproxy starts its system service (Debian's /etc/haproxy/haproxy.cfg), also at every boot;
    # the tests run their own `haproxy -db` children with their own configs. Only when setup
    # installed it: a haproxy that was there before may be someone's load balancer.
    if [[ " ${need[*]} " == *" haproxy "* ]]; then
      systemctl disable --now haproxy.service >/dev/null 2>&1 || true
      command -v deb-systemd-helper >/dev/null 2>&1 && deb-systemd-helper disable haproxy.service >/dev/null 2>&1 || true
      command -v update-rc.d >/dev/null 2>&1 && update-rc.d haproxy disable >/dev/null 2>&1 || true
      service haproxy stop >/dev/null 2>&1 || true
    fi
  else
    echo "setup: missing ${need[*]}; install them (as root: apt-get install ${need[*]}); WireGuard, PostgreSQL and haproxy tests will skip" >&2
  fi
fi

source scripts/node-env.sh
npm ci --no-fund --no-audit --loglevel=error
bash scripts/build.sh
echo "setup: done (node $(node --version))" >&2
