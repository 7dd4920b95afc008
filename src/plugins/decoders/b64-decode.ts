import { createHash } from 'node:crypto'
import { z } from 'zod'
import type { NewArtifact, Plugin } from '../plugin.js'
import { findBase64 } from './base64.js'
import { isMostlyPrintableUtf8, isUtf16leText } from './utf16.js'

/** Options of the b64Decode decoder. */
export const B64DecodeOptions = z
  .strictObject({
    minRunChars: z.number().int().min(8).max(65_536).default(24), // characters: shorter bare base64 runs are not tried
    minBytes: z.number().int().min(1).max(65_536).default(4), // decoded bytes: smaller results are ignored
    maxPayloads: z.number().int().min(1).max(256).default(8), // derived payloads per subject
    printableRatio: z.number().min(0.5).max(1).default(0.9), // share of printable characters a decoded bare run needs
    // Also yield bare runs that decode to unrecognised binary. Off: hex digests, "AAAA..." sleds and long identifiers
    // are valid base64 too, and would each add a payload of noise to every attack that holds one.
    binaryRuns: z.boolean().default(false),
  })
  .prefault({})

// Binary formats worth decoding a bare run for, by their first bytes (what droppers pipe through "base64 -d").
const MAGICS: readonly Buffer[] = [
  Buffer.from('MZ', 'latin1'), // Windows PE
  Buffer.from('\x7fELF', 'latin1'),
  Buffer.from([0x1f, 0x8b]), // gzip
  Buffer.from('PK\x03\x04', 'latin1'), // zip, jar
  Buffer.from('BZh', 'latin1'),
  Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), // xz
  Buffer.from([0xca, 0xfe, 0xba, 0xbe]), // Java class
  Buffer.from([0xac, 0xed, 0x00, 0x05]), // Java serialization (deserialisation exploits)
]

// Credentials longer than this are cut in the artifact (a real one is far shorter; an overflow attempt is not).
const MAX_CREDENTIAL_CHARS = 1024

/**
 * b64Decode: decodes base64 found in a subject: the token of Authorization / Proxy-Authorization / WWW-Authenticate
 * headers (Basic, Negotiate, NTLM) and bare runs of at least `minRunChars` characters that decode to text (UTF-8 or
 * UTF-16LE, as PowerShell -EncodedCommand takes) or to a known binary format. Payload origins:
 * "b64Decode:basic-auth", "b64Decode:negotiate", "b64Decode:ntlm", "b64Decode:run".
 *
 * Basic credentials also become a `decoded` artifact { scheme: 'basic', user, password } holding the password as
 * sent: the pairs a bot tries are what an analyst looks for, and they are the attacker's guesses, not a user's secret.
 */
export function createB64DecodePlugin(options: z.infer<typeof B64DecodeOptions>): Plugin {
  function acceptRun(decoded: Buffer): boolean {
    if (options.binaryRuns) return true
    if (MAGICS.some((magic) => decoded.subarray(0, magic.length).equals(magic))) return true
    return isMostlyPrintableUtf8(decoded, options.printableRatio) || isUtf16leText(decoded, options.printableRatio)
  }
  return {
    name: 'b64Decode',
    phase: 'decode',
    async process(subject, ctx): Promise<void> {
      // Rejected candidates (repeats, tiny ones) cost a slot in the scan, so it is allowed a few more than are kept.
      const candidates = findBase64(subject.data, { minRunChars: options.minRunChars, acceptRun, maxCandidates: options.maxPayloads * 4 })
      const seen = new Set<string>([subject.sha256])
      const credentials = new Set<string>()
      let payloads = 0
      for (const candidate of candidates) {
        if (candidate.source === 'basic-auth') {
          const key = candidate.decoded.toString('latin1')
          if (!credentials.has(key) && credentials.size < options.maxPayloads) {
            credentials.add(key)
            ctx.addArtifact(basicCredentials(candidate.decoded))
          }
        }
        if (payloads >= options.maxPayloads || candidate.decoded.length < options.minBytes) continue
        const sha256 = createHash('sha256').update(candidate.decoded).digest('hex')
        if (seen.has(sha256)) continue
        seen.add(sha256)
        payloads++
        ctx.addPayload(candidate.decoded, `b64Decode:${candidate.source}`)
      }
    },
  }
}

/** The artifact of one Basic token: "user:password" split at the first colon (RFC 7617); no colon, no password. */
function basicCredentials(decoded: Buffer): NewArtifact {
  const text = decoded.toString('utf8')
  const colon = text.indexOf(':')
  const user = colon < 0 ? text : text.slice(0, colon)
  const password = colon < 0 ? null : text.slice(colon + 1)
  const truncated = user.length > MAX_CREDENTIAL_CHARS || (password ?? '').length > MAX_CREDENTIAL_CHARS
  return {
    kind: 'decoded',
    info: {
      scheme: 'basic',
      user: user.slice(0, MAX_CREDENTIAL_CHARS),
      password: password === null ? null : password.slice(0, MAX_CREDENTIAL_CHARS),
      truncated,
    },
  }
}
