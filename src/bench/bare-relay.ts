import { connect, type Server, type Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import { listenBench, serveUntilStopped } from './bench-server.js'

/**
 * The reference of the benchmark's proxy section (d): the least a TCP relay written in Node can do, run in the sensor
 * namespace by startBenchProcess (`node bare-relay.js '<json BareRelaySpec>'`, ready on descriptor 3) on ports the
 * capture rules exclude. For each accepted connection it connects to the target, holds the client until then, and
 * relays both ways with the sensor's flow control (pause past `highWaterMarkBytes` queued, resume on 'drain') and its
 * half-close (a FIN is passed on as a FIN). No queue, no policy, no limits, no recording, no storage: what
 * honeytrap-ts's proxy costs beyond this is the sensor's own work, and what this costs beyond a direct connection is
 * the price of any relay in Node.
 */

export interface BareRelaySpec {
  readonly host: string
  readonly routes: readonly { readonly port: number; readonly targetPort: number }[] // target host: `host`
  readonly highWaterMarkBytes: number
  readonly maxLifetimeMs: number
}

function relay(client: Socket, target: { readonly host: string; readonly port: number; readonly highWaterMarkBytes: number }): void {
  const hwm = target.highWaterMarkBytes
  client.pause()
  const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true })
  const reset = (other: Socket) => (): void => {
    if (!other.destroyed) other.resetAndDestroy()
  }
  client.on('error', reset(upstream))
  upstream.on('error', reset(client))
  upstream.once('connect', () => {
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk)
      if (upstream.writableLength > hwm) client.pause()
    })
    upstream.on('drain', () => client.resume())
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk)
      if (client.writableLength > hwm) upstream.pause()
    })
    client.on('drain', () => upstream.resume())
    client.on('end', () => upstream.end())
    upstream.on('end', () => client.end())
    client.resume()
  })
}


/** Listens on every route and reports ready on descriptor 3; serves until SIGTERM, the lifetime bound or an orphaning. */
export async function runBareRelay(spec: BareRelaySpec): Promise<void> {
  const servers: Server[] = []
  for (const route of spec.routes) {
    servers.push(await listenBench(spec.host, route.port, (socket) => relay(socket, { host: spec.host, port: route.targetPort, highWaterMarkBytes: spec.highWaterMarkBytes })))
  }
  serveUntilStopped(servers, spec.maxLifetimeMs)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runBareRelay(JSON.parse(process.argv[2] ?? '{}') as BareRelaySpec).catch((err: unknown) => {
    process.stderr.write(`bare-relay: ${String(err)}\n`)
    process.exit(1)
  })
}
