// The pcap monitor alone, for test/netns/pcap-source.test.ts: starts a PcapSource on an interface and prints one JSON
// line per event on stdout: {"event":"ready"}, {"event":"attempt",...attempt}, and on SIGTERM {"event":"stopped",
// "stats":...} after stop(). It then ends by itself, without process.exit: if stop() left the capture polled, the
// event loop would stay alive and the test sees the child outlive its deadline. A start failure prints
// {"event":"error","code","message"} and exits 1. The monitor's log goes to stderr.
// Usage: node pcap-source-child.mjs <interface> [exclude port spec] [log level]
// Plain .mjs on the build (dist/), because a plain node child process cannot run the .ts sources.
import { pino } from 'pino'
import { parsePortSpec } from '../../dist/config/port-spec.js'
import { PcapSource } from '../../dist/monitor/pcap-source.js'

const [device, excludeSpec = '', logLevel = 'info'] = process.argv.slice(2)
if (device === undefined) {
  process.stderr.write('usage: pcap-source-child.mjs <interface> [exclude port spec] [log level]\n')
  process.exit(2)
}

function print(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

let exclude = []
if (excludeSpec !== '') {
  const parsed = parsePortSpec(excludeSpec)
  if (!parsed.ok) {
    process.stderr.write(`bad exclude spec: ${parsed.error}\n`)
    process.exit(2)
  }
  exclude = parsed.ranges
}

const log = pino({ level: logLevel, base: null }, pino.destination({ dest: 2, sync: true }))
const source = new PcapSource({ interface: device, exclude, bufferBytes: 2 * 1024 * 1024, snapLength: 256, log })
try {
  source.start((attempt) => print({ event: 'attempt', ...attempt }))
} catch (err) {
  print({ event: 'error', code: err.code ?? null, message: err.message })
  process.exit(1)
}
print({ event: 'ready' })

process.once('SIGTERM', () => {
  void source.stop().then(() => print({ event: 'stopped', stats: source.stats() }))
})
