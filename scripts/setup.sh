#!/usr/bin/env bash
# One-step setup on Debian 12, as root, from a clone of the repository:
#   ./scripts/setup.sh run    install what is needed, build, and run the sensor in the foreground (embedded defaults)
#   ./scripts/setup.sh test   install what is needed, build, and run the whole test suite (namespace tests included)
#   ./scripts/setup.sh deps   only install the Debian packages and the npm dependencies, and build
# Anything after the mode is passed on (`./scripts/setup.sh run --config my.yaml`).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
case "$mode" in
  run|test|deps) shift ;;
  *) echo "usage: $0 run|test|deps [args...]" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages, and the sensor needs CAP_NET_ADMIN)" >&2
  exit 3
fi

# Node.js >= 20.19 with npm is a prerequisite: Debian 12's own nodejs is 18, too old.
if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "setup: Node.js >= 20.19 is required (found: $(node --version 2>/dev/null || echo none)); install it, then re-run" >&2
  exit 1
fi

# Build tools for the native addons (better-sqlite3 compiles SQLite; nfqueue links libnetfilter_queue; cap links
# libpcap; native/ compiles the BPF programs with clang and links its addon with libbpf), and the tools the sensor and
# its tests call: iptables (nft backend), iproute2 (ip netns), ss, prlimit.
packages=(iptables libnetfilter-queue-dev libpcap-dev clang libbpf-dev build-essential python3 iproute2 procps util-linux kmod ca-certificates)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The tests also run the plugins against real servers and tools from Debian: an FTP server (pyftpdlib), a TFTP server
# (tftpd-hpa), clamd, ssdeep, file, openssl, tshark (which checks the pcap export and the pcap monitor) and bpftool
# (which checks that nothing stays attached after the sensor dies). Only the test command installs them, and none of their services may
# start: tftpd-hpa would listen on port 69 of the host and clamav-freshclam would fetch signatures from the internet.
# The tests start the daemons they need themselves, on loopback, and stop them by PID.
if [ "$mode" = test ]; then
  test_packages=(python3-pyftpdlib tftpd-hpa clamav-daemon ssdeep file openssl tshark bpftool)
  missing=()
  for p in "${test_packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing test tools ${missing[*]} (their services stay stopped and disabled)"
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      systemctl disable --now tftpd-hpa clamav-daemon clamav-freshclam >/dev/null 2>&1 || true
    fi
  fi
fi

# The queue module is loaded on demand by the first NFQUEUE rule; load it now so `iptables status` can read it.
modprobe nfnetlink_queue 2>/dev/null || true

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci (compiles SQLite and the NFQUEUE binding: a few minutes the first time)"
  npm ci --no-audit --no-fund
fi
npm run build --silent
# The eBPF programs and their addon (native/): built here, not by npm ci, so a machine without clang can still install.
npm run build:native --silent

case "$mode" in
  run) exec node dist/cli/cli.js run "$@" ;;
  test) exec npm test -- "$@" ;;
  deps) echo "setup: done" ;;
esac
