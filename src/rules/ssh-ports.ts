import { readdir, readFile, readlink } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Finds the ports sshd listens on, so install can keep them off the queue: the operator's way back in must never
 * depend on the sensor. Three sources, unioned because excluding one port too many costs a port the sensor does not
 * watch, while one too few can lock the operator out: the live sockets of processes named sshd, the Port and
 * ListenAddress lines of the sshd configuration (covers socket activation, where systemd owns the socket, and a
 * restart that is still pending), and 22, always.
 */

export const DEFAULT_SSH_PORT = 22

/** A TCP socket in LISTEN state: its local port and the inode that links it to the owning process's fd. */
export interface ListeningSocket {
  readonly port: number
  readonly inode: number
}

export interface DetectSshPortsOptions {
  readonly procDir?: string // '/proc'; a fixture tree in tests
  readonly sshConfigDir?: string // '/etc/ssh'
}

const TCP_LISTEN = '0A' // include/net/tcp_states.h: TCP_LISTEN = 10

/**
 * Parses /proc/net/tcp or /proc/net/tcp6 ("sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...") and keeps
 * the LISTEN sockets. Addresses are hex with the port after the last colon, the same in both files. Pure.
 */
export function parseProcNetTcpListeners(text: string): ListeningSocket[] {
  const sockets: ListeningSocket[] = []
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/)
    const local = fields[1]
    const state = fields[3]
    const inodeField = fields[9]
    if (local === undefined || inodeField === undefined || state?.toUpperCase() !== TCP_LISTEN) continue
    const portHex = local.slice(local.lastIndexOf(':') + 1)
    if (!/^[0-9A-Fa-f]{4}$/.test(portHex) || !/^\d+$/.test(inodeField)) continue
    const port = Number.parseInt(portHex, 16)
    const inode = Number(inodeField)
    if (port > 0 && inode > 0) sockets.push({ port, inode })
  }
  return sockets
}

/** The inode of an fd link target such as "socket:[12345]", or null for files, pipes and the rest. Pure. */
export function parseSocketInode(linkTarget: string): number | null {
  const m = /^socket:\[(\d+)\]$/.exec(linkTarget)
  return m?.[1] === undefined ? null : Number(m[1])
}

/**
 * The ports named by `Port` and `ListenAddress host:port` lines of one sshd_config text. Keywords are
 * case-insensitive and may be joined to their value with `=`, as sshd accepts; comments and bad values are skipped.
 * Pure.
 */
export function parseSshdConfigPorts(text: string): number[] {
  const ports: number[] = []
  for (const raw of text.split('\n')) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim()
    const m = /^(\w+)(?:\s*=\s*|\s+)(\S+)/.exec(line)
    if (!m?.[1] || m[2] === undefined) continue
    const keyword = m[1].toLowerCase()
    let portText: string | undefined
    if (keyword === 'port') {
      portText = m[2]
    } else if (keyword === 'listenaddress') {
      // "[::1]:2222" or "0.0.0.0:2222"; a bare IPv6 address has several colons and no port.
      const bracketed = /^\[[^\]]+\]:(\d+)$/.exec(m[2])
      const plain = /^[^:]+:(\d+)$/.exec(m[2])
      portText = bracketed?.[1] ?? plain?.[1]
    }
    if (portText === undefined || !/^\d{1,5}$/.test(portText)) continue
    const port = Number(portText)
    if (port >= 1 && port <= 65_535) ports.push(port)
  }
  return ports
}

/**
 * The ports to keep off the queue for ssh: sorted, unique, and always including 22 so that a failed detection (no
 * /proc access, sshd renamed, a container) degrades to the default instead of to a lock-out. Never rejects.
 */
export async function detectSshPorts(opts: DetectSshPortsOptions = {}): Promise<number[]> {
  const procDir = opts.procDir ?? '/proc'
  const sshConfigDir = opts.sshConfigDir ?? '/etc/ssh'
  const [live, configured] = await Promise.all([findSshdListeningPorts(procDir), readSshdConfigPorts(sshConfigDir)])
  return [...new Set([DEFAULT_SSH_PORT, ...live, ...configured])].sort((a, b) => a - b)
}

/** Ports of LISTEN sockets held open by a process whose comm is "sshd". */
async function findSshdListeningPorts(procDir: string): Promise<number[]> {
  const listeners = new Map<number, number>() // inode -> port
  for (const file of ['tcp', 'tcp6']) {
    const text = await readFile(join(procDir, 'net', file), 'utf8').catch(() => '')
    for (const s of parseProcNetTcpListeners(text)) listeners.set(s.inode, s.port)
  }
  if (listeners.size === 0) return []
  const entries = await readdir(procDir).catch(() => [] as string[])
  const ports: number[] = []
  for (const pid of entries) {
    if (!/^\d+$/.test(pid)) continue
    // A process can exit between readdir and these reads; that is not an error, just one fewer candidate.
    const comm = await readFile(join(procDir, pid, 'comm'), 'utf8').catch(() => '')
    if (comm.trim() !== 'sshd') continue
    const fdDir = join(procDir, pid, 'fd')
    const fds = await readdir(fdDir).catch(() => [] as string[])
    for (const fd of fds) {
      const target = await readlink(join(fdDir, fd)).catch(() => '')
      const inode = parseSocketInode(target)
      const port = inode === null ? undefined : listeners.get(inode)
      if (port !== undefined) ports.push(port)
    }
  }
  return ports
}

/** Ports from sshd_config and every sshd_config.d/*.conf (Debian's default Include). */
async function readSshdConfigPorts(sshConfigDir: string): Promise<number[]> {
  const files = [join(sshConfigDir, 'sshd_config')]
  const dropIns = await readdir(join(sshConfigDir, 'sshd_config.d')).catch(() => [] as string[])
  for (const name of dropIns.sort()) if (name.endsWith('.conf')) files.push(join(sshConfigDir, 'sshd_config.d', name))
  const ports: number[] = []
  for (const file of files) ports.push(...parseSshdConfigPorts(await readFile(file, 'utf8').catch(() => '')))
  return ports
}
