import { closeSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer, type Server, type Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import type * as Nfqueue from 'nfqueue'
import { parsePacket } from '../monitor/ip-packet.js'

/**
 * The benchmark's yardstick: the least a bind-on-demand monitor must do, so that every figure of honeytrap-ts can be
 * read as a ratio to it. It opens the NFQUEUE, parses each packet with the sensor's own parser, binds a listener for
 * a new (family, port) before accepting the SYN (concurrent SYNs for that port share the bind), and answers every
 * connection with one fixed reply on its first data, then ends it. No storage, no timers, no logging, and it installs
 * no rules: the benchmark installs the same rules the sensor installs, in the namespace it runs in.
 *
 * Its one limit is a bound on listeners (`--max-listeners`, the sensor's listeners.maxListeners, 4096 by default;
 * past it the oldest listener is closed). Without a bound, a scan of every port needs 65,535 descriptors, more than
 * a hard RLIMIT_NOFILE of 20,000 allows, and then the reference would answer scans with resets, not faster.
 *
 * Started by the benchmark as `node reference-monitor.js [--queue N] [--queues N] [--buffer-bytes N] [--mark N]`, it reports readiness with
 * one line on descriptor 3, like `honeytrap-ts run --ready-fd 3`. With `--plain-port P` it opens no queue and only
 * listens on P: the generator check, which tells how fast the load generator can go against the cheapest server.
 *
 * It loads the nfqueue addon itself (monitor/nfqueue-source.ts is otherwise its only importer) because sharing the
 * sensor's monitor would measure the sensor's code on both sides of the ratio.
 */

/** The fixed reply: a complete, empty HTTP response, so a client reading "until the reply" has something to read. */
export const REFERENCE_REPLY = Buffer.from('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n', 'latin1')

// The sensor's defaults (listeners.backlog, monitor.queueBufferBytes), so that neither side gets a bigger queue.
const BACKLOG = 511
const DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024
const DEFAULT_MAX_LISTENERS = 4_096
const DEFAULT_MARK = 0x0040_0000
const READY_FD = 3

/**
 * Answers one connection the way the sensor's normal mode does: the fixed reply on its first bytes, then the
 * connection stays open until the client ends it (a honeypot must, or it loses what an exploit sends after the first
 * reply). With the same bytes and the same conversation on both sides, the ratio measures the sensor's own work:
 * parsing, policy, limits, recording and storage. Errors (resets) are ignored.
 */
function serve(socket: Socket): void {
  socket.setNoDelay(true)
  socket.on('error', () => undefined)
  socket.once('data', () => socket.write(REFERENCE_REPLY))
  socket.once('end', () => socket.end())
}

/** Listens on `port` of every address of `family`; calls `done` once bound or refused, whichever happens. */
function bind(family: 4 | 6, port: number, done: () => void): Server {
  const server = createServer({ noDelay: true }, serve)
  server.once('error', done) // EADDRINUSE and the like: the SYN goes on to whatever owns the port
  server.listen({ host: family === 6 ? '::' : '0.0.0.0', port, backlog: BACKLOG, ipv6Only: family === 6, exclusive: true }, () => {
    server.off('error', done)
    server.on('error', () => undefined) // accept errors (EMFILE) must not end the process
    done()
  })
  return server
}

/** Runs the reference monitor on NFQUEUE `queue` until the process is signalled. */
function runReference(options: { readonly queue: number; readonly queues: number; readonly bufferBytes: number; readonly maxListeners: number; readonly mark: number }): void {
  const require = createRequire(import.meta.url)
  const addon = require('nfqueue') as typeof Nfqueue
  const accept = addon.NF_ACCEPT
  // Keyed by family * 65536 + port. Map order is bind order, so the first key is the oldest listener.
  const bound = new Map<number, Server>()
  const binding = new Map<number, Nfqueue.NFQueuePacket[]>() // packets held until their port's bind settles
  // Marked when its port is bound here, as the sensor marks what it serves: the filter rule accepts it ahead of the host's.
  const verdict = (packet: Nfqueue.NFQueuePacket, served = false): void => {
    try {
      if (served) packet.setVerdict(accept, (packet.info.nfmark | options.mark) >>> 0)
      else packet.setVerdict(accept)
    } catch {
      // Nothing to do: the kernel drops the packet after its queue timeout. Never throw into the addon.
    }
  }
  const onPacket = (packet: Nfqueue.NFQueuePacket): void => {
    try {
      const parsed = parsePacket(packet.payload)
      // The benchmark is TCP only: a datagram is let through without a bind.
      if (!parsed.ok || parsed.attempt.protocol !== 'tcp') return verdict(packet)
      const { family, dstPort } = parsed.attempt
      const key = family * 65_536 + dstPort
      const server = bound.get(key)
      if (server !== undefined) return verdict(packet, server.listening)
      const held = binding.get(key)
      if (held !== undefined) {
        held.push(packet)
        return
      }
      if (bound.size + binding.size >= options.maxListeners) {
        // The one bound, forced by the descriptor limit: the oldest listener goes (its connections carry on).
        const oldest = bound.keys().next()
        if (oldest.done !== true) {
          bound.get(oldest.value)?.close()
          bound.delete(oldest.value)
        }
      }
      binding.set(key, [packet])
      const listener = bind(family, dstPort, () => {
        const packets = binding.get(key) ?? []
        binding.delete(key)
        bound.set(key, listener) // a failed bind too: like the sensor, don't retry it on every SYN
        for (const p of packets) verdict(p, listener.listening)
      })
    } catch {
      verdict(packet)
    }
  }
  // The same queues as the sensor's config (--queue-balance over them), each through its own socket.
  for (let number = options.queue; number < options.queue + options.queues; number++) {
    const nfq = new addon.NFQueue()
    nfq.open(number, options.bufferBytes)
    nfq.run(onPacket)
  }
  signalReady()
}

/** Runs a plain server on `port`: the same replies, no queue. */
function runPlain(port: number): void {
  bind(4, port, signalReady)
}

function signalReady(): void {
  writeSync(READY_FD, 'ready\n')
  closeSync(READY_FD)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      queue: { type: 'string', default: '0' },
      queues: { type: 'string', default: '1' },
      'buffer-bytes': { type: 'string' },
      'max-listeners': { type: 'string' },
      'plain-port': { type: 'string' },
      mark: { type: 'string' },
    },
  })
  // The addon's poll handle keeps the loop alive and cannot be closed: a signal ends the process outright.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => process.exit(0))
  if (values['plain-port'] !== undefined) runPlain(Number(values['plain-port']))
  else {
    const bufferBytes = Number(values['buffer-bytes'] ?? DEFAULT_BUFFER_BYTES)
    runReference({ queue: Number(values.queue), queues: Number(values.queues), bufferBytes, maxListeners: Number(values['max-listeners'] ?? DEFAULT_MAX_LISTENERS), mark: Number(values.mark ?? DEFAULT_MARK) })
  }
}
