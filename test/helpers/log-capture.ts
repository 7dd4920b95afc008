import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'

/** One parsed pino line. */
export interface LogLine {
  readonly level: number
  readonly msg: string
  readonly [field: string]: unknown
}

/** A pino logger at `level` whose lines land in `lines`, parsed, for tests that check what was logged. */
export function captureLog(level = 'info'): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done): void {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine)
      done()
    },
  })
  return { log: pino({ level }, sink), lines }
}
