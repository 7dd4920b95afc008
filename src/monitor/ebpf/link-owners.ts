import { readdir, readFile, readlink } from 'node:fs/promises'
import { join } from 'node:path'

/** What /proc/PID/fdinfo/FD says of a BPF link: the fields that name its program and where it is attached. */
export interface LinkFdinfo {
  readonly linkType: string // 'netns', 'xdp', 'cgroup', ...
  readonly progId: number
  readonly netnsIno: number | null // netns links only
}

/** The bpf link in `text` (an fdinfo file), or null when it is not one or a field is malformed. */
export function parseLinkFdinfo(text: string): LinkFdinfo | null {
  const fields = new Map<string, string>()
  // A few short lines; anything longer is not a link's fdinfo.
  for (const line of text.slice(0, 4_096).split('\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim())
  }
  const linkType = fields.get('link_type')
  const progId = decimal(fields.get('prog_id'))
  if (linkType === undefined || !/^[a-z_0-9]{1,32}$/.test(linkType) || progId === null) return null
  return { linkType, progId, netnsIno: decimal(fields.get('netns_ino')) }
}

function decimal(text: string | undefined): number | null {
  if (text === undefined || !/^\d{1,20}$/.test(text)) return null
  const value = Number(text)
  return Number.isSafeInteger(value) ? value : null
}

export interface LinkOwnerOptions {
  readonly procRoot?: string // '/proc'; tests point it elsewhere
  readonly deadlineMs?: number // the scan gives up after this long with what it found (default 2 s)
}

/**
 * The processes holding a BPF link to one of `progIds`, by scanning /proc/PID/fd (only links are read further). Used
 * to name the owner in an error, so it is best effort: processes that exit or deny access mid-scan are skipped, and a
 * host with very many descriptors gets a partial answer at the deadline rather than a slow start.
 */
export async function findLinkOwners(progIds: readonly number[], options: LinkOwnerOptions = {}): Promise<number[]> {
  const root = options.procRoot ?? '/proc'
  const deadline = Date.now() + (options.deadlineMs ?? 2_000)
  const wanted = new Set(progIds)
  const owners: number[] = []
  const pids = (await readdir(root).catch(() => [] as string[])).filter((name) => /^\d+$/.test(name))
  for (const pid of pids) {
    if (Date.now() > deadline) break
    const fds = await readdir(join(root, pid, 'fd')).catch(() => [] as string[])
    for (const fd of fds) {
      const target = await readlink(join(root, pid, 'fd', fd)).catch(() => '')
      if (target !== 'anon_inode:bpf_link') continue
      const info = parseLinkFdinfo(await readFile(join(root, pid, 'fdinfo', fd), 'utf8').catch(() => ''))
      if (info !== null && wanted.has(info.progId)) {
        owners.push(Number(pid))
        break
      }
    }
  }
  return owners
}
