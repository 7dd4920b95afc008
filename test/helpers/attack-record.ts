import type { Attack } from '../../src/attack/attack.js'

/**
 * An attack record as a responder hands it to the store: `payload` in, `response` out (one transcript chunk each,
 * the response 1 ms later), with plausible metadata that `overrides` replaces. The tests' one builder of records.
 */
export function attackRecord(payload: Buffer, overrides: Partial<Attack> & { readonly response?: Buffer } = {}): Attack {
  const response = overrides.response ?? Buffer.alloc(0)
  const startedAtMs = overrides.startedAtMs ?? 1_700_000_000_000
  return {
    id: '01JTESTATTACK0000000000000',
    protocol: 'tcp',
    family: 4,
    mode: 'normal',
    source: { address: '198.18.0.2', port: 40_000 },
    target: { address: '198.18.0.1', port: 80 },
    startedAtMs,
    endedAtMs: startedAtMs + 100,
    closeReason: 'peer-closed',
    payload,
    truncated: false,
    bytesReceived: payload.length,
    bytesSent: response.length,
    response,
    responseTruncated: false,
    transcript: [
      { direction: 'in' as const, offsetMs: 0, size: payload.length },
      { direction: 'out' as const, offsetMs: 1, size: response.length },
    ].filter((c) => c.size > 0),
    transcriptTruncated: false,
    relay: null,
    synFacts: null,
    ...overrides,
  }
}
