import { mkdirSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { join } from 'node:path'
import { isMainThread } from 'node:worker_threads'

/**
 * A preload for `npm run bench -- --profile`: `NODE_OPTIONS=--import=<this file>` with HT_BENCH_CPU_PROFILE_DIR set
 * starts the V8 CPU profiler in the main thread at start-up and writes `CPU.<pid>.cpuprofile` (Chrome DevTools
 * format) when the process exits. Node 20 refuses --cpu-prof in NODE_OPTIONS, and the sensor is started by a helper
 * that takes no node flags, hence this. The store's writer thread is not profiled; its CPU time shows in the
 * per-thread figures of the report.
 */

const dir = process.env['HT_BENCH_CPU_PROFILE_DIR']

if (isMainThread && dir !== undefined && dir !== '') {
  const session = new Session()
  session.connect()
  session.post('Profiler.enable')
  // V8's default of 1 ms, as --cpu-prof uses: finer sampling costs the profiled sensor a third of its throughput.
  session.post('Profiler.setSamplingInterval', { interval: 1_000 })
  session.post('Profiler.start')
  process.once('exit', () => {
    // An in-thread inspector session answers synchronously, so this completes inside the 'exit' handler.
    session.post('Profiler.stop', (err, result) => {
      if (err !== null) return
      mkdirSync(dir, { recursive: true })
      writeFileSync(join(dir, `CPU.${process.pid}.cpuprofile`), JSON.stringify(result.profile))
    })
  })
}
