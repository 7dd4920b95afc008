import { parseArgs, type ParseArgsConfig } from 'node:util'
import { HoneytrapError } from '../core/errors.js'

/** A command-line mistake: exits 2 with the message, which names the flag and what it expects. */
export function usageError(message: string): HoneytrapError {
  return new HoneytrapError('HT_ERR_CLI_USAGE', message)
}

type Options = NonNullable<ParseArgsConfig['options']>

/** node:util parseArgs, strict, with its errors turned into usage errors that name the command. */
export function parseFlags<T extends Options>(command: string, args: readonly string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals })
  } catch (err) {
    throw usageError(`${command}: ${(err as Error).message.replace(/\. To specify a positional argument.*$/s, '')} (see --help)`)
  }
}

/** Parses an integer flag within bounds, or fails naming the flag. */
export function intFlag(flag: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw usageError(`--${flag} "${value}" is not valid; expected an integer from ${min} to ${max}`)
  }
  return n
}

/** Parses a duration like 90s, 15m, 24h, 7d into ms, or fails naming the flag. */
export function durationFlag(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(value)
  if (!m) throw usageError(`--${flag} "${value}" is not a duration; expected a number and a unit, e.g. 90s, 15m, 24h, 7d`)
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd']
  return Number(m[1]) * unit
}
