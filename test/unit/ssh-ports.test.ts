import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { describe, expect, it, onTestFinished } from 'vitest'

import {
  detectSshPorts,
  parseProcNetTcpListeners,
  parseSocketInode,
  parseSshdConfigPorts,
} from '../../src/rules/ssh-ports.js'

// /proc/net/tcp: sshd on 0.0.0.0:2222 (inode 1001), a web server on 127.0.0.1:8080 (1002), an established ssh
// session (state 01, inode 1003), and a LISTEN socket whose inode is 0 (orphaned, skipped).
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0200A8C0:08AE 0100A8C0:D431 01 00000000:00000000 02:000A7D5E 00000000     0        0 1003 4 0000000000000000 20 4 29 10 -1
   3: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0
`

// /proc/net/tcp6: sshd on [::]:2222 (inode 2001).
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:08AE 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
`

describe('parseProcNetTcpListeners', () => {
  it('keeps LISTEN sockets with their port and inode, from both files', () => {
    expect(parseProcNetTcpListeners(TCP)).toEqual([
      { port: 2222, inode: 1001 },
      { port: 8080, inode: 1002 },
    ])
    expect(parseProcNetTcpListeners(TCP6)).toEqual([{ port: 2222, inode: 2001 }])
  })

  it('returns nothing for empty or unrelated text', () => {
    expect(parseProcNetTcpListeners('')).toEqual([])
    expect(parseProcNetTcpListeners('not a table\n1 2 3')).toEqual([])
  })
})

describe('parseSocketInode', () => {
  it('reads socket links only', () => {
    expect(parseSocketInode('socket:[1001]')).toBe(1001)
    expect(parseSocketInode('pipe:[5]')).toBeNull()
    expect(parseSocketInode('/dev/null')).toBeNull()
  })
})

describe('parseSshdConfigPorts', () => {
  it('reads Port and ListenAddress host:port, in any case and with =', () => {
    const text = [
      '# Port 2200 (a comment, not a port)',
      'Port 2222',
      'port=2223',
      '  PORT   2224   # trailing comment',
      'ListenAddress 0.0.0.0:2225',
      'ListenAddress [::1]:2226',
      'ListenAddress ::', // bare IPv6: no port here
      'ListenAddress 192.0.2.1', // no port: Port lines apply
      'Port 70000',
      'Port ssh',
      'PasswordAuthentication no',
      'Match User backup',
      '  AllowTcpForwarding no',
    ].join('\n')
    expect(parseSshdConfigPorts(text)).toEqual([2222, 2223, 2224, 2225, 2226])
  })

  it('returns nothing for the stock Debian config, where Port 22 is commented out', () => {
    expect(parseSshdConfigPorts('Include /etc/ssh/sshd_config.d/*.conf\n#Port 22\n#AddressFamily any\n')).toEqual([])
  })
})

describe('detectSshPorts', () => {
  async function fixtureTree(): Promise<{ proc: string; ssh: string }> {
    const root = await mkdtemp(join(tmpdir(), 'ht-ssh-'))
    onTestFinished(() => rm(root, { recursive: true, force: true }))
    const proc = join(root, 'proc')
    const ssh = join(root, 'ssh')
    await mkdir(join(proc, 'net'), { recursive: true })
    await writeFile(join(proc, 'net', 'tcp'), TCP)
    await writeFile(join(proc, 'net', 'tcp6'), TCP6)
    // pid 100: sshd holding both listeners; pid 200: nginx holding 8080; pid 300: an sshd session (no listener).
    for (const [pid, comm, links] of [
      ['100', 'sshd', ['socket:[1001]', 'socket:[2001]', '/dev/null']],
      ['200', 'nginx', ['socket:[1002]']],
      ['300', 'sshd', ['socket:[1003]']],
    ] as const) {
      await mkdir(join(proc, pid, 'fd'), { recursive: true })
      await writeFile(join(proc, pid, 'comm'), `${comm}\n`)
      for (const [i, target] of links.entries()) await symlink(target, join(proc, pid, 'fd', String(i + 3)))
    }
    await mkdir(join(proc, 'self'), { recursive: true }) // not a pid: skipped
    await mkdir(join(ssh, 'sshd_config.d'), { recursive: true })
    await writeFile(join(ssh, 'sshd_config'), 'Include /etc/ssh/sshd_config.d/*.conf\n#Port 22\n')
    await writeFile(join(ssh, 'sshd_config.d', 'port.conf'), 'Port 2022\n')
    await writeFile(join(ssh, 'sshd_config.d', 'ignored.disabled'), 'Port 9999\n')
    return { proc, ssh }
  }

  it('unions 22, the live sshd listeners and the configured ports, sorted and unique', async () => {
    const { proc, ssh } = await fixtureTree()
    expect(await detectSshPorts({ procDir: proc, sshConfigDir: ssh })).toEqual([22, 2022, 2222])
  })

  it('falls back to 22 when nothing can be read', async () => {
    const missing = join(tmpdir(), `ht-ssh-missing-${process.pid}`)
    expect(await detectSshPorts({ procDir: missing, sshConfigDir: missing })).toEqual([22])
  })

  it('runs against the real /proc without failing and always includes 22', async () => {
    const ports = await detectSshPorts()
    expect(ports).toContain(22)
    expect([...ports].sort((a, b) => a - b)).toEqual(ports)
  })
})
