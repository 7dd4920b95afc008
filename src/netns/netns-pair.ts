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
  /** Deletes every namespace it created (and with them the veth pairs and every rule inside). Idempotent. */
  destroy(): Promise<void>
}

/**
 * A pair plus a backend host behind the sensor, on a second veth from 198.19.<subnet>.0/24 and fd00:4855:<subnet>::/64
 * (sensor .1/::1, backend .2/::2). The attacker has no route to it and the sensor does not forward, so only the
 * sensor's own sockets (mirror, proxy) reach it.
 */
export interface NetnsTrio extends NetnsPair {
  readonly backendNs: string
  readonly backendV4: string
  readonly sensorBackendV4: string // the sensor's address on the backend link
  readonly backendV6: string
  readonly sensorBackendV6: string
}

/** `subnet` (1-254) picks 198.18.<subnet>.0/24 (and 198.19.<subnet>.0/24 for the backend); random when absent. */
export interface NetnsPairOptions {
  readonly label: string
  readonly subnet?: number
  readonly backend?: boolean
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

/** One end of a veth: the namespace it lives in, its device name and its addresses. */
interface LinkEnd {
  readonly ns: string
  readonly dev: string
  readonly v4: string
  readonly v6: string
}

/** Creates a veth between `a.ns` and `b.ns` and brings both ends up with their /24 and /64 addresses. */
async function linkNamespaces(a: LinkEnd, b: LinkEnd): Promise<void> {
  await ip(['link', 'add', a.dev, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns])
  for (const end of [a, b]) {
    await ip(['-n', end.ns, 'addr', 'add', `${end.v4}/24`, 'dev', end.dev])
    // nodad: no duplicate address detection delay; these links have exactly two hosts.
    await ip(['-n', end.ns, 'addr', 'add', `${end.v6}/64`, 'dev', end.dev, 'nodad'])
    await ip(['-n', end.ns, 'link', 'set', end.dev, 'up'])
  }
}

/**
 * Creates the pair (and, with `backend: true`, the backend namespace behind the sensor). Concurrent pairs with
 * different subnets never share addresses; veth names are 9 characters, under the kernel's 15.
 */
export async function createNetnsPair(options: NetnsPairOptions & { readonly backend: true }): Promise<NetnsTrio>
export async function createNetnsPair(options: NetnsPairOptions): Promise<NetnsPair>
export async function createNetnsPair(options: NetnsPairOptions): Promise<NetnsPair | NetnsTrio> {
  if (process.getuid?.() !== 0) throw new HoneytrapError('HT_ERR_NOT_ROOT', 'network namespaces need root')
  const tag = randomBytes(3).toString('hex')
  // 1 to 254: a 0 would make the IPv6 prefix fd00:4854:0::, which the kernel prints as fd00:4854:: (not our text).
  const subnet = options.subnet ?? 1 + (randomBytes(1)[0]! % 254)
  const hex = subnet.toString(16)
  const prefix = `ht-${options.label}-${process.pid}-${tag}`
  const sensorNs = `${prefix}-s`
  const attackerNs = `${prefix}-a`
  const backendNs = options.backend === true ? `${prefix}-b` : undefined
  const pair = {
    sensorNs,
    attackerNs,
    sensorV4: `198.18.${subnet}.1`,
    attackerV4: `198.18.${subnet}.2`,
    sensorV6: `fd00:4854:${hex}::1`,
    attackerV6: `fd00:4854:${hex}::2`,
  }
  const backend =
    backendNs === undefined
      ? undefined
      : {
          backendNs,
          sensorBackendV4: `198.19.${subnet}.1`,
          backendV4: `198.19.${subnet}.2`,
          sensorBackendV6: `fd00:4855:${hex}::1`,
          backendV6: `fd00:4855:${hex}::2`,
        }
  const created: string[] = []
  let destroyed = false
  const destroy = async (): Promise<void> => {
    if (destroyed) return
    destroyed = true
    // Deleting a namespace deletes its end of each veth, which deletes the peer: nothing is left on the host.
    for (const ns of created) await ip(['netns', 'delete', ns]).catch(() => undefined)
  }
  try {
    for (const ns of [sensorNs, attackerNs, ...(backendNs === undefined ? [] : [backendNs])]) {
      await ip(['netns', 'add', ns])
      created.push(ns)
      await ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    }
    await linkNamespaces(
      { ns: sensorNs, dev: `hts${tag}`, v4: pair.sensorV4, v6: pair.sensorV6 },
      { ns: attackerNs, dev: `hta${tag}`, v4: pair.attackerV4, v6: pair.attackerV6 },
    )
    if (backend !== undefined) {
      await linkNamespaces(
        { ns: sensorNs, dev: `htb${tag}`, v4: backend.sensorBackendV4, v6: backend.sensorBackendV6 },
        { ns: backend.backendNs, dev: `htc${tag}`, v4: backend.backendV4, v6: backend.backendV6 },
      )
      // A new namespace inherits the host's IPv4 forwarding setting: turn it off so that even an attacker given a
      // route could not reach the backend through the sensor. The sensor's own sockets do not need forwarding.
      await execFileAsync('ip', ['netns', 'exec', sensorNs, 'sysctl', '-qw', 'net.ipv4.conf.all.forwarding=0', 'net.ipv6.conf.all.forwarding=0']).catch((err: unknown) => {
        throw new HoneytrapError('HT_ERR_NETNS', `could not turn off forwarding in ${sensorNs}`, { cause: err })
      })
    }
  } catch (err) {
    await destroy()
    throw err
  }
  return {
    ...pair,
    ...backend,
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
