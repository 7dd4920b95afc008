// A sensor stand-in for the SIGKILL durability test: opens the compiled store and enqueues attacks until it is killed,
// printing `enqueued <id> <ms since epoch>` after each enqueue so the test knows what was handed over and when.
// Usage: node store-writer-child.mjs <db path> <batchWindowMs> [log level]
// Plain .mjs on the build (dist/), because a plain node child process cannot run the .ts sources.
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { createUlid } from '../../dist/core/ids.js'
import { createSqliteStore } from '../../dist/store/sqlite-store.js'

const [path, windowArg, logLevel = 'warn'] = process.argv.slice(2)
if (path === undefined || windowArg === undefined) {
  process.stderr.write('usage: store-writer-child.mjs <db path> <batchWindowMs> [log level]\n')
  process.exit(2)
}

const store = await createSqliteStore({
  path,
  batchWindowMs: Number(windowArg),
  batchMaxAttacks: 1000,
  maxQueuedAttacks: 1_000_000,
  maxQueuedBytes: 1024 * 1024 * 1024,
  // The store's 'attack stored' lines go to stdout, synchronously, as in the sensor (without its pid field).
  log: pino({ level: logLevel, base: null, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true })),
})
process.stdout.write('ready\n')

let sport = 1024
function enqueueSome() {
  // Each tick's lines go out in one write, so they never interleave with the store's log lines on the same fd 1.
  let out = ''
  for (let i = 0; i < 4; i++) {
    const now = Date.now()
    sport = sport >= 65_000 ? 1024 : sport + 1
    const payload = randomBytes(Math.floor(Math.random() * 600))
    const attack = {
      id: createUlid(now),
      protocol: sport % 2 === 0 ? 'tcp' : 'udp',
      family: 4,
      mode: 'normal',
      source: { address: '203.0.113.7', port: sport },
      target: { address: '198.18.0.1', port: 23 },
      startedAtMs: now - 50,
      endedAtMs: now,
      closeReason: 'peer-closed',
      payload,
      truncated: false,
      bytesReceived: payload.length,
      bytesSent: 0,
      response: Buffer.alloc(0),
      responseTruncated: false,
      transcript: payload.length > 0 ? [{ direction: 'in', offsetMs: 0, size: payload.length }] : [],
      transcriptTruncated: false,
      relay: null,
    }
    store.enqueue(attack)
    out += `enqueued ${attack.id} ${now}\n`
  }
  process.stdout.write(out)
}
setInterval(enqueueSome, 2)
