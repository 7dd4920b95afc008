/**
 * The one registry of error codes. Codes are documented in docs/errors.md and are never renamed or reused:
 * callers match on `code`, never on the message.
 */
export const ERROR_CODES = {
  HT_ERR_CONFIG_INVALID: 'the configuration file or a command-line flag has a bad key or value',
  HT_ERR_CONFIG_READ: 'the configuration file could not be read or is not valid YAML',
  HT_ERR_CLI_USAGE: 'the command line is malformed (unknown command, flag or argument)',
  HT_ERR_NOT_ROOT: 'the operation needs root (CAP_NET_ADMIN) and the process does not have it',
  HT_ERR_MONITOR_OPEN: 'the packet monitor could not be opened (queue already bound, no nfnetlink_queue, no such interface, addon not built, no privilege)',
  HT_ERR_RULES: 'an iptables/ip6tables command failed',
  HT_ERR_STORE_OPEN: 'the SQLite database could not be opened or migrated',
  HT_ERR_NETNS: 'a network namespace operation (demo, tests) failed',
  HT_ERR_STORE_BUSY: 'the database stayed locked by another writer (the sensor, the plugin pipeline) for longer than the command waits',
  HT_ERR_NOT_FOUND: 'the attack named on the command line is not in the database',
  HT_ERR_PLUGIN_LOAD: 'a post-processing plugin could not be loaded or created (unknown name, bad module, bad options)',
  HT_ERR_PIPELINE: 'the plugin pipeline process failed to start or stopped unexpectedly',
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/** The project's one error class: `code` is stable, `message` is for humans, `cause` keeps the underlying error. */
export class HoneytrapError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'HoneytrapError'
    this.code = code
  }
}

/** One problem found while validating the config, with the dotted path of the key at fault. */
export interface ConfigIssue {
  readonly path: string
  readonly message: string
}

/** A config that failed validation; `issues` names every bad key and what was expected. */
export class ConfigError extends HoneytrapError {
  readonly issues: readonly ConfigIssue[]

  constructor(message: string, issues: readonly ConfigIssue[], options?: { cause?: unknown }) {
    super('HT_ERR_CONFIG_INVALID', message, options)
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/** True when `err` is a HoneytrapError carrying `code`. */
export function hasErrorCode(err: unknown, code: ErrorCode): err is HoneytrapError {
  return err instanceof HoneytrapError && err.code === code
}
