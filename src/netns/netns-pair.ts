import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { HoneytrapError } from '../core/errors.js'

const execFileAsync = promisify(execFile)

/**
 * Two network namespaces joined by a veth pair: a sensor host and an attacker host. Used by the demo, the end-to-end
 * tests and the benchmarks, so that all their traffic stays on links this process made. Addresses come from the
 * benchmarking range 198.18.0.0/15 (RFC 2544) and the ULA range fd00::/8: they exist only inside these namespaces.
 */
export interface NetnsPair {
  readonly sensorNs: string
  readonly attackerNs: string
  readonly sensorV4: string
  readonly attackerV4: string
  readonly sensorV6: string
  readonly attackerV6: string
  /** Runs a command inside a namespace and returns its stdout; throws HT_ERR_NETNS with stderr on failure. */
  exec(ns: string, file: string, args: readonly string[]): Promise<string>
  /** Starts a long-running process inside a namespace. */
  spawn(ns: string, file: string, args: readonly string[], options?: SpawnOptions): ChildProcess
  /** Deletes both namespaces (and with them the veth pair and every rule inside). Idempotent. */
  destroy(): Promise<void>
}

async function ip(args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('ip', args)
    return stdout
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? ''
    throw new HoneytrapError('HT_ERR_NETNS', `ip ${args.join(' ')} failed: ${stderr.trim() || (err as Error).message}`, { cause: err })
  }
}

/** Creates the pair; `subnet` (1-254) picks 198.18.<subnet>.0/24 so concurrent pairs never share addresses. */
export async function createNetnsPair(options: { readonly label: string; readonly subnet?: number }): Promise<NetnsPair> {
  if (process.getuid?.() !== 0) throw new HoneytrapError('HT_ERR_NOT_ROOT', 'network namespaces need root')
  const tag = randomBytes(3).toString('hex')
  // 1 to 254: a 0 would make the IPv6 prefix fd00:4854:0::, which the kernel prints as fd00:4854:: (not our text).
  const subnet = options.subnet ?? 1 + (randomBytes(1)[0]! % 254)
  const sensorNs = `ht-${options.label}-${process.pid}-${tag}-s`
  const attackerNs = `ht-${options.label}-${process.pid}-${tag}-a`
  const vethS = `hts${tag}`
  const vethA = `hta${tag}`
  const pair = {
    sensorNs,
    attackerNs,
    sensorV4: `198.18.${subnet}.1`,
    attackerV4: `198.18.${subnet}.2`,
    sensorV6: `fd00:4854:${subnet.toString(16)}::1`,
    attackerV6: `fd00:4854:${subnet.toString(16)}::2`,
  }
  let destroyed = false
  const destroy = async (): Promise<void> => {
    if (destroyed) return
    destroyed = true
    // Deleting a namespace deletes its end of the veth, which deletes the peer: nothing is left on the host.
    for (const ns of [sensorNs, attackerNs]) await ip(['netns', 'delete', ns]).catch(() => undefined)
  }
  try {
    await ip(['netns', 'add', sensorNs])
    await ip(['netns', 'add', attackerNs])
    await ip(['link', 'add', vethS, 'netns', sensorNs, 'type', 'veth', 'peer', 'name', vethA, 'netns', attackerNs])
    for (const [ns, dev, v4, v6] of [
      [sensorNs, vethS, pair.sensorV4, pair.sensorV6],
      [attackerNs, vethA, pair.attackerV4, pair.attackerV6],
    ] as const) {
      await ip(['-n', ns, 'link', 'set', 'lo', 'up'])
      await ip(['-n', ns, 'addr', 'add', `${v4}/24`, 'dev', dev])
      // nodad: no duplicate address detection delay; these links have exactly two hosts.
      await ip(['-n', ns, 'addr', 'add', `${v6}/64`, 'dev', dev, 'nodad'])
      await ip(['-n', ns, 'link', 'set', dev, 'up'])
    }
  } catch (err) {
    await destroy()
    throw err
  }
  return {
    ...pair,
    async exec(ns: string, file: string, args: readonly string[]): Promise<string> {
      try {
        const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns, file, ...args], { maxBuffer: 64 * 1024 * 1024 })
        return stdout
      } catch (err) {
        const stderr = (err as { stderr?: string }).stderr ?? ''
        throw new HoneytrapError('HT_ERR_NETNS', `in ${ns}: ${file} ${args.join(' ')} failed: ${stderr.trim() || (err as Error).message}`, { cause: err })
      }
    },
    spawn(ns: string, file: string, args: readonly string[], spawnOptions: SpawnOptions = {}): ChildProcess {
      return spawn('ip', ['netns', 'exec', ns, file, ...args], spawnOptions)
    },
    destroy,
  }
}
