import { hash } from 'node:crypto'
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'

/** Where a sample was put. */
export interface QuarantinedSample {
  readonly sha256: string
  readonly path: string
  readonly size: number
  readonly created: boolean // false: the same bytes were already there
}

/**
 * Downloaded samples, once each, named by their SHA-256 under a two-character fan-out (`ab/abcdef...`). Files are
 * 0400 and directories 0700: readable by the sensor's user only and never executable, so a sample cannot be run by
 * accident nor read by another local user. A file is written under a temporary name and renamed into place, so a
 * name that exists always holds the whole sample.
 */
export class Quarantine {
  readonly dir: string

  constructor(dir: string) {
    this.dir = dir
  }

  /** The path a sample with this digest has (or would have). */
  pathOf(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a sha256 digest: ${sha256.slice(0, 80)}`)
    return join(this.dir, sha256.slice(0, 2), sha256)
  }

  /** Stores `data` unless the same bytes are stored already. Synchronous: the pipeline writes one sample at a time. */
  store(data: Buffer): QuarantinedSample {
    const sha256 = hash('sha256', data, 'hex')
    const path = this.pathOf(sha256)
    try {
      if (statSync(path).size === data.length) return { sha256, path, size: data.length, created: false }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    mkdirSync(join(this.dir, sha256.slice(0, 2)), { recursive: true, mode: 0o700 })
    const temporary = `${path}.${process.pid}.tmp`
    const fd = openSync(temporary, 'w', 0o400)
    try {
      for (let offset = 0; offset < data.length; ) offset += writeSync(fd, data, offset)
      fsyncSync(fd)
    } catch (err) {
      closeSync(fd)
      unlinkSync(temporary)
      throw err
    }
    closeSync(fd)
    renameSync(temporary, path)
    return { sha256, path, size: data.length, created: true }
  }
}
