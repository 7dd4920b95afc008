/**
 * How every accepted attacker socket is set up, whichever socket accepted it (a per-port listener, or the eBPF
 * monitor's one steering socket): half-open kept (a relay passes the attacker's FIN on and still sends the answer
 * back; Node would otherwise end the socket at the FIN), and no Nagle delay on replies.
 */
export const ACCEPTED_SOCKET_OPTIONS = Object.freeze({ noDelay: true, allowHalfOpen: true })
