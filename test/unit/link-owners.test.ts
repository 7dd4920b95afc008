import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { findLinkOwners, parseLinkFdinfo } from '../../src/monitor/ebpf/link-owners.js'

// As Linux 6.x prints a netns link's fdinfo (read from a running sensor's steering link).
const NETNS_LINK = 'pos:\t0\nflags:\t02000000\nmnt_id:\t17\nino:\t1038\nlink_type:\tnetns\nlink_id:\t981\nprog_tag:\tad8e06abbd2b69b3\nprog_id:\t3127\nnetns_ino:\t4026532177\nattach_type:\t36\n'

describe('parseLinkFdinfo', () => {
  it("reads a link's type, program and namespace", () => {
    expect(parseLinkFdinfo(NETNS_LINK)).toEqual({ linkType: 'netns', progId: 3127, netnsIno: 4026532177 })
    expect(parseLinkFdinfo('link_type:\txdp\nlink_id:\t4\nprog_id:\t12\nifindex:\t3\n')).toEqual({ linkType: 'xdp', progId: 12, netnsIno: null })
  })

  it('is null for what is not a link, or a link with a bad field', () => {
    expect(parseLinkFdinfo('pos:\t0\nflags:\t02\nmnt_id:\t15\n')).toBeNull() // a regular file
    expect(parseLinkFdinfo('link_type:\tnetns\nprog_id:\t-3\n')).toBeNull()
    expect(parseLinkFdinfo('link_type:\tnetns\nprog_id:\t99999999999999999999\n')).toBeNull()
    expect(parseLinkFdinfo('link_type:\tnet ns;rm\nprog_id:\t5\n')).toBeNull()
    expect(parseLinkFdinfo(`${'x'.repeat(5_000)}\nlink_type:\tnetns\nprog_id:\t5\n`)).toBeNull() // fields past the first 4 KiB
  })

  it('never throws and returns only well-formed values, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 600 }), (text) => {
        const info = parseLinkFdinfo(text)
        if (info !== null) {
          expect(Number.isSafeInteger(info.progId) && info.progId >= 0).toBe(true)
          expect(info.linkType).toMatch(/^[a-z_0-9]{1,32}$/)
        }
      }),
    )
  })
})

describe('findLinkOwners', () => {
  let root: string | undefined
  afterEach(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
    root = undefined
  })

  /** A /proc look-alike: each process's fds are symlinks to what readlink would show, with an fdinfo file each. */
  function fakeProc(processes: Record<string, Record<string, { target: string; fdinfo: string }>>): string {
    const dir = mkdtempSync(join(tmpdir(), 'ht-proc-'))
    for (const [pid, fds] of Object.entries(processes)) {
      mkdirSync(join(dir, pid, 'fd'), { recursive: true })
      mkdirSync(join(dir, pid, 'fdinfo'), { recursive: true })
      for (const [fd, { target, fdinfo }] of Object.entries(fds)) {
        symlinkSync(target, join(dir, pid, 'fd', fd))
        writeFileSync(join(dir, pid, 'fdinfo', fd), fdinfo)
      }
    }
    mkdirSync(join(dir, 'sys')) // not a process
    return dir
  }

  it('names the processes holding a link to the programs, and only those', async () => {
    root = fakeProc({
      '100': { '3': { target: 'anon_inode:bpf_link', fdinfo: NETNS_LINK } },
      '200': {
        '0': { target: '/dev/null', fdinfo: NETNS_LINK }, // not a link, whatever its fdinfo says
        '7': { target: 'anon_inode:bpf_link', fdinfo: NETNS_LINK.replace('3127', '3128') },
      },
      '300': { '4': { target: 'anon_inode:bpf_link', fdinfo: 'link_type:\tnetns\nprog_id:\tgarbage\n' } },
    })
    expect(await findLinkOwners([3127], { procRoot: root })).toEqual([100])
    expect((await findLinkOwners([3127, 3128], { procRoot: root })).sort()).toEqual([100, 200])
    expect(await findLinkOwners([1], { procRoot: root })).toEqual([])
  })

  it('answers with nothing when /proc cannot be read', async () => {
    expect(await findLinkOwners([3127], { procRoot: '/nonexistent-proc' })).toEqual([])
  })
})
