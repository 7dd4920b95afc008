import type { z } from 'zod'
import { ClamavOptions, createClamavPlugin } from './analyzers/clamav.js'
import { createFileTypePlugin, FileTypeOptions } from './analyzers/file-type-plugin.js'
import { createFuzzyHashPlugin, FuzzyHashOptions } from './analyzers/fuzzy-hash.js'
import { B64DecodeOptions, createB64DecodePlugin } from './decoders/b64-decode.js'
import { createDeUnicodePlugin, DeUnicodeOptions } from './decoders/de-unicode.js'
import { createVncDownloadPlugin, VncDownloadOptions } from './decoders/vnc-download.js'
import { createXorDecodePlugin, XorDecodeOptions } from './decoders/xor-decode.js'
import { createFtpDownloadPlugin, FtpDownloadOptions } from './download/ftp-download.js'
import { createHttpDownloadPlugin, HttpDownloadOptions } from './download/http-download.js'
import { createTftpDownloadPlugin, TftpDownloadOptions } from './download/tftp-download.js'
import type { Plugin, PluginEnv, PluginPhase } from './plugin.js'
import { createLogAttackerPlugin, LogAttackerOptions } from './savers/log-attacker.js'
import { createSaveFilePlugin, SaveFileOptions } from './savers/save-file.js'

/** A built-in plugin: its phase, the schema of its options (checked with the config) and its factory. */
export interface BuiltinPlugin {
  readonly phase: PluginPhase
  readonly options: z.ZodType
  create(options: unknown, env: PluginEnv): Plugin
}

/** Binds a plugin's options schema to its factory, so each factory receives exactly what its schema produced. */
function builtin<S extends z.ZodType>(phase: PluginPhase, options: S, create: (options: z.infer<S>, env: PluginEnv) => Plugin): BuiltinPlugin {
  return { phase, options, create: (raw, env) => create(options.parse(raw), env) }
}

/** Every built-in plugin by name; docs/plugin-options.md describes each and its options. */
export const BUILTIN_PLUGINS: Readonly<Record<string, BuiltinPlugin>> = {
  b64Decode: builtin('decode', B64DecodeOptions, (o) => createB64DecodePlugin(o)),
  deUnicode: builtin('decode', DeUnicodeOptions, (o) => createDeUnicodePlugin(o)),
  xorDecode: builtin('decode', XorDecodeOptions, (o) => createXorDecodePlugin(o)),
  vncDownload: builtin('decode', VncDownloadOptions, (o) => createVncDownloadPlugin(o)),
  httpDownload: builtin('decode', HttpDownloadOptions, (o) => createHttpDownloadPlugin(o)),
  ftpDownload: builtin('decode', FtpDownloadOptions, (o) => createFtpDownloadPlugin(o)),
  tftpDownload: builtin('decode', TftpDownloadOptions, (o) => createTftpDownloadPlugin(o)),
  fileType: builtin('analyze', FileTypeOptions, (o) => createFileTypePlugin(o)),
  fuzzyHash: builtin('analyze', FuzzyHashOptions, (o) => createFuzzyHashPlugin(o)),
  clamav: builtin('analyze', ClamavOptions, (o) => createClamavPlugin(o)),
  saveFile: builtin('save', SaveFileOptions, (o, env) => createSaveFilePlugin(o, env)),
  logAttacker: builtin('postprocess', LogAttackerOptions, (o, env) => createLogAttackerPlugin(o, env)),
}

/**
 * The plugins a config without a `plugins.list` runs: the decoders and analysers, which only read the attack. The
 * downloaders are left out on purpose: they contact the attacker's servers from the sensor's address, a step the
 * operator takes deliberately (docs/plugins.md, "Turning on downloads").
 */
export const DEFAULT_PLUGIN_LIST: readonly string[] = ['b64Decode', 'deUnicode', 'xorDecode', 'vncDownload', 'fileType', 'fuzzyHash']
