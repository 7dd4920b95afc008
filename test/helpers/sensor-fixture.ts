import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNetnsPair, type NetnsPair } from '../../src/netns/netns-pair.js'
import { startSensorProcess, type SensorProcess } from '../../src/netns/sensor-process.js'

/** A sensor in its own namespace pair, with its temp directory, config and database. */
export interface SensorFixture {
  readonly pair: NetnsPair
  sensor: SensorProcess | undefined // undefined once a test has stopped it itself
  readonly dir: string
  readonly dbPath: string
  /** Stops the sensor (if still running) with `signal`, deletes the namespaces and the temp directory. */
  teardown(signal?: NodeJS.Signals): Promise<void>
}

/**
 * Creates the namespaces, runs `prepare` on the temp directory, writes the config (`configYaml`, or what it returns
 * after `prepare`) and starts the real sensor on it. Whatever was made is removed
 * again if the start fails, so a failing `beforeAll` leaves nothing behind.
 */
export async function startSensorFixture(options: { readonly label: string; readonly configYaml: string | (() => string); readonly logLevel?: string; readonly prepare?: (dir: string) => void }): Promise<SensorFixture> {
  const dir = mkdtempSync(join(tmpdir(), `ht-${options.label}-`))
  const dbPath = join(dir, 'attacks.db')
  const configPath = join(dir, 'config.yaml')
  let pair: NetnsPair | undefined
  try {
    options.prepare?.(dir)
    writeFileSync(configPath, typeof options.configYaml === 'function' ? options.configYaml() : options.configYaml)
    pair = await createNetnsPair({ label: options.label })
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
