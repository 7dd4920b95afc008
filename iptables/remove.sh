#!/bin/sh
# Removes every honeytrap-ts capture rule: all jumps to chain HONEYTRAP, then the chain. Safe to run when nothing is
# installed. A thin wrapper around `honeytrap-ts iptables remove`; see docs/iptables.md.
#
#   sudo ./iptables/remove.sh
set -eu
if command -v honeytrap-ts >/dev/null 2>&1; then
  exec honeytrap-ts iptables remove "$@"
fi
# A source checkout or an unpacked package, where the CLI is not on PATH: use the built one next to this script.
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
exec node "$here/../dist/cli/cli.js" iptables remove "$@"
