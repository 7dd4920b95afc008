#!/bin/sh
# Installs the honeytrap-ts capture rules (chain HONEYTRAP, jumped to from INPUT). A thin wrapper for people who look
# for a script here: all the logic (idempotence, ssh exclusion, IPv6, nft/legacy checks) lives in
# `honeytrap-ts iptables install`, so this script and the CLI can never disagree. See docs/iptables.md.
#
#   sudo ./iptables/install.sh [--queue N] [--exclude PORTS] [--interface IF]
#   e.g. sudo ./iptables/install.sh --queue 0 --exclude 22/tcp,3306 --interface eth0
set -eu
if command -v honeytrap-ts >/dev/null 2>&1; then
  exec honeytrap-ts iptables install "$@"
fi
# A source checkout or an unpacked package, where the CLI is not on PATH: use the built one next to this script.
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
exec node "$here/../dist/cli/cli.js" iptables install "$@"
