/**
 * Settles a race of WireGuard handshake initiations on one relayed peer.
 *
 * Through the relay, both nodes usually add each other within a few milliseconds and, with a
 * persistent keepalive, both send a handshake initiation at once. WireGuard then answers the
 * other side's initiation, which discards its own; the response to its own initiation arrives
 * and is refused ("invalid response"), and both sides sit as responders waiting for a
 * confirmation that never comes. Nothing moves until the 5 s retry (REKEY_TIMEOUT), and a new
 * peer's first packet waits 5 s. The same 5 s stall follows when one side's initiation reached
 * the other before it had added the peer: the initiation was dropped, and the answer to the
 * other side's later one is throttled.
 *
 * One side of each pair (the one whose node id sorts first: both agree without talking) wins
 * the race: while its own initiation is unanswered, the first initiation that arrives from the
 * peer is not handed to WireGuard, and the winner's own initiation is sent again instead. The
 * peer answers that one (it never saw it, or it refuses the duplicate as a replay, harmlessly),
 * and the handshake completes within one round trip. Only one initiation per own initiation is
 * held back: when the winner's handshake was lost some other way (say its response was lost),
 * the next initiation of the peer passes and stock WireGuard behaviour resumes.
 *
 * Pure: packets in, decisions out; the caller owns sockets and time.
 */

/** WireGuard message types (the first byte of every message; three zero bytes follow). */
const WG_INITIATION = 1
const WG_RESPONSE = 2
/** Sizes of the handshake messages (WireGuard whitepaper §5.4). */
const INITIATION_BYTES = 148
const RESPONSE_BYTES = 92
/** WireGuard retries an unanswered initiation after REKEY_TIMEOUT; by then ours is stale. */
export const REKEY_TIMEOUT_MS = 5000

function messageType(packet: Buffer): number {
  if (packet.length < 4 || packet[1] !== 0 || packet[2] !== 0 || packet[3] !== 0) return 0
  return packet[0]!
}

const isInitiation = (p: Buffer): boolean => p.length === INITIATION_BYTES && messageType(p) === WG_INITIATION
const isResponse = (p: Buffer): boolean => p.length === RESPONSE_BYTES && messageType(p) === WG_RESPONSE

/** What to do with a packet from the peer. */
export type IncomingDecision =
  | {readonly deliver: true}
  /** Do not hand it to WireGuard; send `resend` (this side's initiation) to the peer again. */
  | {readonly deliver: false; readonly resend: Buffer}

const DELIVER: IncomingDecision = {deliver: true}

export class InitiationTieBreak {
  private pending: {packet: Buffer; at: number; heldBack: boolean} | undefined

  /**
   * @param wins whether this side wins races (selfId < peerId; see initiationWinner)
   * @param now milliseconds, from the caller's clock
   */
  constructor(
    readonly wins: boolean,
    private readonly now: () => number,
  ) {}

  /** A packet this side's WireGuard sends to the peer. */
  outgoing(packet: Buffer): void {
    if (!this.wins || !isInitiation(packet)) return
    // A copy: the caller's buffer may be reused once it is sent.
    this.pending = {packet: Buffer.from(packet), at: this.now(), heldBack: false}
  }

  /** A packet from the peer, before it is handed to WireGuard. */
  incoming(packet: Buffer): IncomingDecision {
    const pending = this.pending
    if (!pending) return DELIVER
    if (isResponse(packet)) {
      // Our initiation was answered (or the peer is answering one: a handshake is under way).
      this.pending = undefined
      return DELIVER
    }
    if (!isInitiation(packet)) return DELIVER
    if (this.now() - pending.at >= REKEY_TIMEOUT_MS || pending.heldBack) {
      this.pending = undefined
      return DELIVER
    }
    pending.heldBack = true
    return {deliver: false, resend: pending.packet}
  }
}

/** Whether `selfId`'s side wins initiation races with `peerId` (the two ids differ). */
export const initiationWinner = (selfId: string, peerId: string): boolean => selfId < peerId
