/**
 * Resolves after two check phases of the event loop, the second one after a full poll phase (which, with an
 * immediate pending, does not block): every connection the kernel had already queued on a listening socket has been
 * accepted by then. Used before closing a listening socket, which would otherwise reset those connections unrecorded.
 */
export function acceptQueued(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)))
}
