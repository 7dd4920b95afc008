import { execFile } from 'node:child_process'
import { readFile, readlink } from 'node:fs/promises'
import { promisify } from 'node:util'

/**
 * Where the cgroup v2 hierarchy is mounted, from /proc/self/mounts text: /sys/fs/cgroup on a unified host, often
 * /sys/fs/cgroup/unified on a hybrid one (v1 controllers beside it). Its root holds every process of the host, which
 * is where the bind-watching programs attach. Mount points escape spaces and the like as octal (\040).
 */
export function parseCgroup2Root(mounts: string): string | null {
  for (const line of mounts.split('\n')) {
    const fields = line.split(' ')
    if (fields.length >= 3 && fields[2] === 'cgroup2') return fields[1]!.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)))
  }
  return null
}

/**
 * The cgroup v2 root as a path this process can open, or null. A process started by `ip netns exec` runs in a mount
 * namespace of its own, with a fresh /sys and no cgroup mount. Only there (its mount namespace is not its parent's)
 * is the hierarchy mounted, on its /sys/fs/cgroup: the mount lives in that namespace alone, which goes with the
 * process. In a shared mount namespace nothing is ever mounted; null then means the host has no cgroup v2 mounted.
 */
export async function findCgroup2Root(): Promise<string | null> {
  const own = parseCgroup2Root(await readFile('/proc/self/mounts', 'utf8').catch(() => ''))
  if (own !== null) return own
  // `ip netns exec` unshares the mount namespace and then execs the sensor: its namespace is not its parent's.
  const [self, parent] = await Promise.all([readlink('/proc/self/ns/mnt').catch(() => null), readlink(`/proc/${process.ppid}/ns/mnt`).catch(() => null)])
  if (self === null || parent === null || self === parent) return null
  // On the fresh sysfs's own cgroup directory: nothing is created on any shared filesystem, nothing to clean up.
  try {
    await promisify(execFile)('mount', ['-t', 'cgroup2', 'none', PRIVATE_MOUNT_POINT], { timeout: 5_000 })
    return PRIVATE_MOUNT_POINT
  } catch {
    return null
  }
}

const PRIVATE_MOUNT_POINT = '/sys/fs/cgroup'
