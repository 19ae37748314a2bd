/**
 * One WebSocket text message framed once and written as is to many server sockets.
 *
 * The netmap hub sends the same delta to every node of a network: at 10,000 nodes, `ws.send`
 * frames it 10,000 times (a header buffer, a cork, two writes and an uncork per socket). Framing
 * it once and writing the one buffer to each socket does the same thing on the wire for about
 * 60 % of the time (bench/ws-fanout.mjs). The frame is what `ws` itself would write: a server
 * frame (no mask), FIN set, text opcode, no compression.
 *
 * Writing beside `ws` is only correct while its sender has nothing of its own in flight (no
 * queued or compressing message, not halfway through a fragmented one) and no extension is
 * negotiated: then a frame written to the socket lands between whole messages, exactly where
 * `ws.send` would put it. Those are `ws` internals; `canWriteRaw` checks their shape on every
 * call and anything unexpected (another `ws` version, a client socket) takes `ws.send`, so the
 * worst a change in `ws` can do is cost the speed-up (ws-frame.test.ts fails then, to say so).
 */
import type {Socket} from 'node:net'
import * as wsModule from 'ws'
import type {WebSocket} from 'ws'

/** A text message and its wire frame, built once. */
export interface PrebuiltFrame {
  readonly payload: Buffer
  readonly frame: Buffer
}

/** ws's Sender state when it is not compressing or queueing (lib/sender.js DEFAULT). */
const SENDER_IDLE = 0

interface WsInternals {
  _isServer?: unknown
  _socket?: Socket | null
  _extensions?: Record<string, unknown>
  _sender?: {_state?: unknown; _firstFragment?: unknown; _queue?: unknown}
}

/** `ws` exports its frame builder (`Sender.frame`); @types/ws does not declare it. */
interface WsStatics {
  Sender: {
    frame(
      data: Buffer,
      opts: {fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean},
    ): Buffer[]
  }
}

/** Frames `payload` (UTF-8 JSON) as one unmasked, final text frame. */
export function prebuiltTextFrame(payload: Buffer): PrebuiltFrame {
  const parts = (wsModule as unknown as WsStatics).Sender.frame(payload, {
    fin: true,
    opcode: 1,
    mask: false,
    readOnly: true,
    rsv1: false,
  })
  return {payload, frame: Buffer.concat(parts)}
}

/** True when a frame written straight to `ws`'s socket would land between two whole messages. */
export function canWriteRaw(ws: WebSocket): boolean {
  const w = ws as unknown as WsInternals
  const sender = w._sender
  return (
    w._isServer === true &&
    w._socket !== null &&
    w._socket !== undefined &&
    typeof w._socket.write === 'function' &&
    w._extensions !== undefined &&
    Object.keys(w._extensions).length === 0 &&
    sender !== undefined &&
    sender._state === SENDER_IDLE &&
    sender._firstFragment === true &&
    Array.isArray(sender._queue) &&
    sender._queue.length === 0
  )
}

/** Sends `msg` on an open server socket: the prebuilt frame where that is safe, else `ws.send`. */
export function sendPrebuilt(ws: WebSocket, msg: PrebuiltFrame): void {
  if (canWriteRaw(ws)) (ws as unknown as WsInternals)._socket!.write(msg.frame)
  else ws.send(msg.payload, {binary: false})
}
