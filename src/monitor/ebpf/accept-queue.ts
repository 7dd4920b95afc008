import { readFile } from 'node:fs/promises'

/**
 * The eBPF monitor takes every port's handshakes through one socket, so one accept queue holds them all, and the
 * kernel caps it at net.core.somaxconn (per network namespace; 4,096 by default). A scan at the kernel's speed
 * outruns the sensor's accepts by more than that: handshakes past it are dropped and the clients retry a second
 * later. At or above this value a full scan of every port went through without a retry (test/netns/full-scan).
 */
export const ADVISED_SOMAXCONN = 65_535
const SOMAXCONN_PATH = '/proc/sys/net/core/somaxconn'

/** net.core.somaxconn of the calling process's network namespace, or null when it cannot be read. */
export async function readSomaxconn(): Promise<number | null> {
  const text = await readFile(SOMAXCONN_PATH, 'utf8').catch(() => null)
  const value = text === null ? Number.NaN : Number.parseInt(text.trim(), 10)
  return Number.isInteger(value) ? value : null
}

export const SOMAXCONN_FIX = `sysctl -w net.core.somaxconn=${ADVISED_SOMAXCONN} (and in /etc/sysctl.d/ to keep it)`
