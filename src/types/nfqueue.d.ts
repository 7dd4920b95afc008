// Types for the `nfqueue` binding (atoy40/node-nfqueue, GPL-2.0-or-later), which ships none.
declare module 'nfqueue' {
  export interface NFQueuePacketInfo {
    readonly len: number
    readonly id: number
    readonly nfmark: number
    readonly indev: number
    readonly indev_name: string
  }
  export interface NFQueuePacket {
    readonly info: NFQueuePacketInfo
    readonly payload: Buffer
    setVerdict(verdict: number, mark?: number, buffer?: Buffer | null): void
  }
  export class NFQueue {
    /** Throws a TypeError when the queue cannot be opened (no privilege, queue bound by another process). */
    open(queueNum: number, bufferSize: number): void
    /** The callback must never throw: the addon cannot handle an exception from it. */
    run(callback: (packet: NFQueuePacket) => void): void
  }
  export const NF_DROP: number
  export const NF_ACCEPT: number
  const nfqueue: { NFQueue: typeof NFQueue; NF_ACCEPT: number; NF_DROP: number }
  export default nfqueue
}
