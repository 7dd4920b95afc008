/** A one-line progress bar on a terminal: `[#####.....] 5000/10000 attacks  2500.0/s  eta 2s`. */
export interface ProgressBar {
  update(done: number, total: number): void
  /** Ends the line (when anything was drawn), so what follows starts on a fresh one. */
  end(): void
}

/** The bar that draws nothing: what createProgressBar gives when no one is watching. */
export const NO_PROGRESS: ProgressBar = Object.freeze({ update: () => undefined, end: () => undefined })

/**
 * A bar on `stream` (stderr by default), redrawn at most ten times a second, or one that draws nothing when the
 * stream is not a terminal: scripts and pipes get clean output.
 */
export function createProgressBar(unit: string, stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  if (stream.isTTY !== true) return NO_PROGRESS
  const started = Date.now()
  let lastDrawMs = 0
  let drawn = false
  return {
    update(done, total) {
      const now = Date.now()
      if (now - lastDrawMs < 100 && done !== total) return
      lastDrawMs = now
      const width = 30
      const ratio = total === 0 ? 1 : Math.min(1, done / total)
      const filled = Math.round(ratio * width)
      const seconds = (now - started) / 1_000
      const rate = seconds > 0 ? done / seconds : 0
      const eta = rate > 0 ? Math.max(0, Math.round((total - done) / rate)) : 0
      stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${unit}  ${rate.toFixed(1)}/s  eta ${eta}s\x1b[K`)
      drawn = true
    },
    end() {
      if (drawn) stream.write('\n')
    },
  }
}

/** The items of `items`, calling `onItem` with how many have been taken so far. */
export function* withProgress<T>(items: Iterable<T>, onItem: (done: number) => void): Generator<T> {
  let done = 0
  for (const item of items) {
    yield item
    onItem(++done)
  }
}
