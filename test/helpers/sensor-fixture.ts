import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNetnsPair, type NetnsPair, type NetnsTrio } from '../../src/netns/netns-pair.js'
import { startSensorProcess, type SensorProcess } from '../../src/netns/sensor-process.js'

/** A sensor in its own namespace pair (or trio, with a backend namespace), with its temp directory, config and database. */
export interface SensorFixture<P extends NetnsPair = NetnsPair> {
  readonly pair: P
  sensor: SensorProcess | undefined // undefined once a test has stopped it itself
  readonly dir: string
  readonly dbPath: string
  /** Stops the sensor (if still running) with `signal`, deletes the namespaces and the temp directory. */
  teardown(signal?: NodeJS.Signals): Promise<void>
}

/** What startSensorFixture takes; `configYaml` may be a function of the namespaces, for configs that name their addresses. */
export interface SensorFixtureOptions<P extends NetnsPair = NetnsPair> {
  readonly label: string
  readonly configYaml: string | ((pair: P) => string)
  readonly logLevel?: string
  readonly prepare?: (dir: string) => void
  /** Runs once the namespaces exist, before the sensor starts (sysctls of the sensor's namespace, say). */
  readonly beforeStart?: (pair: P) => Promise<void>
  readonly backend?: boolean // also create the backend namespace behind the sensor (a NetnsTrio)
}

/**
 * Creates the namespaces, runs `prepare` on the temp directory, writes the config (`configYaml`, or what it returns
 * after `prepare`) and starts the real sensor on it. Whatever was made is removed
 * again if the start fails, so a failing `beforeAll` leaves nothing behind.
 */
export async function startSensorFixture(options: SensorFixtureOptions<NetnsTrio> & { readonly backend: true }): Promise<SensorFixture<NetnsTrio>>
export async function startSensorFixture(options: SensorFixtureOptions): Promise<SensorFixture>
export async function startSensorFixture(options: SensorFixtureOptions | SensorFixtureOptions<NetnsTrio>): Promise<SensorFixture<NetnsPair>> {
  const dir = mkdtempSync(join(tmpdir(), `ht-${options.label}-`))
  const dbPath = join(dir, 'attacks.db')
  const configPath = join(dir, 'config.yaml')
  let pair: NetnsPair | undefined
  try {
    // The namespaces come first: a config may name their (random) addresses. The overloads tie a function taking a
    // NetnsTrio to `backend: true`, so it only ever gets a trio.
    pair = options.backend === true ? await createNetnsPair({ label: options.label, backend: true }) : await createNetnsPair({ label: options.label })
    options.prepare?.(dir)
    await (options.beforeStart as ((p: NetnsPair) => Promise<void>) | undefined)?.(pair)
    const config = options.configYaml as string | ((p: NetnsPair) => string)
    writeFileSync(configPath, typeof config === 'function' ? config(pair) : config)
    const sensor = await startSensorProcess(pair, ['--config', configPath, '--db', dbPath, '--log-level', options.logLevel ?? 'info'])
    const fixture: SensorFixture = {
      pair,
      sensor,
      dir,
      dbPath,
      async teardown(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
        await fixture.sensor?.stop(signal)
        fixture.sensor = undefined
        await pair?.destroy()
        rmSync(dir, { recursive: true, force: true })
      },
    }
    return fixture
  } catch (err) {
    await pair?.destroy()
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}
