import { readdir, readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import { openSynFacts, type SynFactsHandle, type FactsAttachment } from './bpf-native.js'
import type { SynRecord } from './syn-record.js'

// How often the interface list is read again: a veth or VLAN added later gets the program within this.
const INTERFACE_SCAN_MS = 1_000

export interface SynFactsTapOptions {
  readonly interfaces: readonly string[] | null // null: every interface but lo (lo too with includeLoopback), as they come and go
  readonly includeLoopback: boolean
  readonly onRecords: (records: readonly SynRecord[]) => void
  /** What the log says when the program cannot be loaded at all: what the records lose without it. */
  readonly unavailable: string
  readonly log: Logger
}

/**
 * The program that reports each new SYN's header facts through a ring buffer (at tc ingress through a tcx link, or at
 * XDP on kernels before 6.6), kept on every wanted interface:
 * attached to those that appear (or come back with a new index), let go of those that go away. An interface that
 * refuses it is warned about once per index. Used by the eBPF monitor for every connection, and by the NFQUEUE
 * monitor for the SYNs that skip its queue.
 */
export class SynFactsTap {
  readonly #o: SynFactsTapOptions
  #facts: SynFactsHandle | null = null
  #timer: NodeJS.Timeout | undefined
  #syncing = false
  readonly #refused = new Map<string, number>() // name -> the ifindex that refused the program

  constructor(options: SynFactsTapOptions) {
    this.#o = options
  }

  /** Loads the program and attaches it; false, with a warning, when it cannot be loaded at all (then nothing runs). */
  async open(): Promise<boolean> {
    try {
      this.#facts = openSynFacts({ interfaces: [], onRecords: (records) => this.#o.onRecords(records) })
    } catch (err) {
      this.#o.log.warn({ err }, this.#o.unavailable)
      return false
    }
    await this.#sync()
    this.#o.log.info({ interfaces: this.#facts?.interfaces() ?? [] }, 'syn facts attached')
    this.#timer = setInterval(() => void this.#sync(), INTERFACE_SCAN_MS).unref()
    return true
  }

  interfaces(): readonly FactsAttachment[] {
    return this.#facts?.interfaces() ?? []
  }

  close(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    this.#facts?.close()
    this.#facts = null
  }

  async #sync(): Promise<void> {
    const facts = this.#facts
    if (facts === null || this.#syncing) return
    this.#syncing = true
    try {
      const present = new Map<string, number>()
      const names = this.#o.interfaces ?? (await readdir('/sys/class/net').catch(() => [] as string[])).filter((name) => name !== 'lo' || this.#o.includeLoopback)
      for (const name of names) {
        const ifindex = await readIfindex(name)
        if (ifindex !== null) present.set(name, ifindex)
      }
      if (this.#facts !== facts) return // closed while reading
      for (const attached of facts.interfaces()) {
        if (present.get(attached.name) !== attached.ifindex) {
          facts.detach(attached.name)
          this.#o.log.info({ interface: attached.name, ifindex: attached.ifindex }, 'syn facts: interface gone')
        }
      }
      const attachedNames = new Set(facts.interfaces().map((a) => a.name))
      for (const [name, ifindex] of present) {
        if (attachedNames.has(name) || this.#refused.get(name) === ifindex) continue
        try {
          const attachment = facts.attach(name)
          this.#refused.delete(name)
          if (this.#timer !== undefined) this.#o.log.info({ interface: attachment }, 'syn facts: new interface')
        } catch (err) {
          this.#refused.set(name, ifindex)
          this.#o.log.warn({ err, interface: name }, 'syn facts unavailable on this interface: its records will have none')
        }
      }
    } finally {
      this.#syncing = false
    }
  }
}

async function readIfindex(name: string): Promise<number | null> {
  if (!/^[^/\0]{1,15}$/.test(name) || name === '.' || name === '..') return null
  const text = await readFile(`/sys/class/net/${name}/ifindex`, 'utf8').catch(() => '')
  const ifindex = Number.parseInt(text, 10)
  return Number.isSafeInteger(ifindex) && ifindex > 0 ? ifindex : null
}
