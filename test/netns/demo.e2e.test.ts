import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'
import { distScript } from '../../src/netns/sensor-process.js'
import { describeNetns } from '../helpers/netns-env.js'

describeNetns('honeytrap-ts demo', () => {
  it('catches the scripted attacks in its own namespaces and removes everything it made', async () => {
    const child = spawn(process.execPath, [distScript('cli/cli.js'), 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d))
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    expect(code, out).toBe(0)
    expect(out).toContain('scan: 200 of 200 ports answered')
    // One stored row per scripted attack, on the ports attacked, with the right protocol.
    for (const row of [/ tcp +198\.18\.\d+\.2:\d+ +80 /, / tcp +198\.18\.\d+\.2:\d+ +21 /, / tcp +198\.18\.\d+\.2:\d+ +445 /, / udp +198\.18\.\d+\.2:\d+ +5060 /, / tcp +\[fd00:4854:[0-9a-f]+::2\]:\d+ +6379 /]) {
      expect(out).toMatch(row)
    }
    expect(out).toContain("205 attacks stored") // 5 scripted attacks + the 200 scan connections
    const { stdout } = await promisify(execFile)('ip', ['netns', 'list'])
    expect(stdout).not.toContain(`ht-demo-${String(child.pid)}-`)
  }, 90_000)
})
