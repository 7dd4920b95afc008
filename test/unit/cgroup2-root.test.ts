import { describe, expect, it } from 'vitest'
import { parseCgroup2Root } from '../../src/monitor/ebpf/cgroup2-root.js'

describe('parseCgroup2Root', () => {
  it('finds the cgroup v2 mount on unified and hybrid hosts, and none where there is none', () => {
    expect(parseCgroup2Root('sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n')).toBe('/sys/fs/cgroup')
    const hybrid = ['tmpfs /sys/fs/cgroup tmpfs rw 0 0', 'cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0', 'cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0'].join('\n')
    expect(parseCgroup2Root(hybrid)).toBe('/sys/fs/cgroup/unified')
    expect(parseCgroup2Root('cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n')).toBeNull()
    expect(parseCgroup2Root('')).toBeNull()
  })

  it('reads octal escapes in the mount point', () => {
    expect(parseCgroup2Root('none /mnt/my\\040cgroups cgroup2 rw 0 0')).toBe('/mnt/my cgroups')
  })
})
