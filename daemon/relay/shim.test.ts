import {describe, expect, it} from 'vitest'
import {FakeClock, yieldToPromises} from '../../shared/testing/fake-clock.js'
import {PACE, WireGuardPacer} from './shim.js'
import {DATAGRAM_TRUESIZE, type WireGuardQueue} from './wireguard-queue.js'

/**
 * WireGuard's socket as the probe sees it: what was sent and not read yet, counted at
 * DATAGRAM_TRUESIZE a packet. `read(n)` is WireGuard reading n packets; `unknown` makes the
 * probe fail (no /proc, no socket on the port).
 */
class FakeSocketQueue implements WireGuardQueue {
  waiting = 0
  readings = 0
  unknown = false
  rxQueue(port: number): number | undefined {
    this.readings++
    if (this.unknown || port !== 51820) return undefined
    return this.waiting * DATAGRAM_TRUESIZE
  }
  read(n: number): void {
    this.waiting = Math.max(0, this.waiting - n)
  }
}

const TARGET_PACKETS = 10

function setup() {
  const clock = new FakeClock()
  const socket = new FakeSocketQueue()
  const sent: number[] = []
  const pacer = new WireGuardPacer(clock, {
    probe: socket,
    port: () => 51820,
    target: TARGET_PACKETS * DATAGRAM_TRUESIZE,
  })
  const owner = {}
  // Like dgram: the packet lands in WireGuard's queue (here at once; the kernel may be later).
  const send = (p: Buffer) => {
    sent.push(p.readUInt32BE(0))
    socket.waiting++
  }
  const submit = (from: number, n: number) => {
    let accepted = 0
    for (let i = 0; i < n; i++) {
      const p = Buffer.alloc(4)
      p.writeUInt32BE(from + i)
      if (pacer.submit(owner, send, p)) accepted++
    }
    return accepted
  }
  return {clock, socket, sent, pacer, owner, submit}
}

const range = (from: number, n: number) => Array.from({length: n}, (_, i) => from + i)

describe('WireGuardPacer with a view of WireGuard socket', () => {
  it('sends only what fits below the target and keeps the rest, in order, while WireGuard does not read', async () => {
    const {clock, socket, sent, pacer, owner, submit} = setup()
    expect(submit(0, 25)).toBe(25)
    expect(sent).toEqual(range(0, TARGET_PACKETS))
    expect(pacer.waitingFor(owner)).toBe(15)
    // WireGuard is off the CPU: nothing more goes, however much time passes.
    await yieldToPromises()
    await clock.advanceAsync(5)
    expect(sent).toHaveLength(TARGET_PACKETS)
    // It reads 4: the next look lets exactly 4 more go.
    socket.read(4)
    await clock.advanceAsync(1)
    expect(sent).toEqual(range(0, 14))
    // It reads everything, twice: the rest goes, still in order.
    socket.read(100)
    await clock.advanceAsync(1)
    socket.read(100)
    await clock.advanceAsync(1)
    expect(sent).toEqual(range(0, 25))
    expect(pacer.waitingFor(owner)).toBe(0)
  })

  it('looks at the socket once per turn of the event loop: sends of this turn may not have reached the kernel yet', async () => {
    const {socket, sent, submit} = setup()
    submit(0, 3 * TARGET_PACKETS)
    expect(sent).toEqual(range(0, TARGET_PACKETS))
    expect(socket.readings).toBe(1)
    // At the end of the turn it looks again and sends what fits then.
    socket.read(100)
    await yieldToPromises()
    expect(socket.readings).toBe(2)
    expect(sent).toEqual(range(0, 2 * TARGET_PACKETS))
  })

  it('does not spin on a full socket: it looks again a millisecond later', async () => {
    const {clock, socket, sent, submit} = setup()
    socket.waiting = TARGET_PACKETS
    submit(0, 5)
    expect(sent).toEqual([])
    // One reading for the turn, and none by itself until the timer.
    expect(socket.readings).toBe(1)
    await yieldToPromises()
    await yieldToPromises()
    expect(socket.readings).toBe(1)
    socket.read(TARGET_PACKETS)
    await clock.advanceAsync(1)
    expect(sent).toEqual(range(0, 5))
  })

  it('paces by time when the socket cannot be seen', () => {
    const {socket, sent, submit} = setup()
    socket.unknown = true
    submit(0, PACE.burst + 5)
    expect(sent).toEqual(range(0, PACE.burst))
  })

  it('an arrival in a later turn looks at the socket again before the timer does, and goes behind what waits', async () => {
    const {socket, sent, submit} = setup()
    socket.waiting = TARGET_PACKETS
    submit(0, 3)
    expect(sent).toEqual([])
    socket.read(TARGET_PACKETS)
    // Same turn: no second reading (44 packets of one WebSocket message must not cost 44).
    submit(3, 1)
    expect(sent).toEqual([])
    expect(socket.readings).toBe(1)
    await yieldToPromises()
    submit(4, 1)
    expect(sent).toEqual(range(0, 5))
  })

  it('thins a standing queue as CoDel does: a drop once waits stay over targetMs for intervalMs, none once they fall under', async () => {
    const {clock, socket, sent, pacer, owner} = setup()
    let dropped = 0
    const send = (p: Buffer) => {
      sent.push(p.readUInt32BE(0))
      socket.waiting++
    }
    const total = 300
    for (let i = 0; i < total; i++) {
      const p = Buffer.alloc(4)
      p.writeUInt32BE(i)
      pacer.submit(owner, send, p, () => dropped++)
    }
    expect(sent).toHaveLength(TARGET_PACKETS)
    // WireGuard reads one packet a millisecond: what leaves has waited ever longer.
    const readEachMs = async (ms: number) => {
      for (let t = 0; t < ms; t++) {
        socket.read(1)
        await clock.advanceAsync(1)
      }
    }
    await readEachMs(PACE.targetMs + PACE.intervalMs - 1)
    expect(dropped).toBe(0)
    await readEachMs(2)
    expect(dropped).toBe(1)
    // Still standing: the next drops come sooner and sooner (intervalMs / sqrt(drops)).
    await readEachMs(PACE.intervalMs)
    expect(dropped).toBe(2)
    await readEachMs(Math.ceil(PACE.intervalMs / Math.SQRT2))
    expect(dropped).toBe(3)
    // WireGuard catches up: the rest goes, in order, and nothing more is dropped.
    for (let i = 0; i < 10 && pacer.waitingFor(owner) > 0; i++) {
      socket.read(1000)
      await clock.advanceAsync(1)
    }
    expect(pacer.waitingFor(owner)).toBe(0)
    expect(dropped).toBe(3)
    expect(sent).toHaveLength(total - dropped)
    expect(sent).toEqual([...sent].sort((a, b) => a - b))
  })

  it('still bounds what waits by PACE.maxQueued', () => {
    const {socket, submit, pacer, owner} = setup()
    socket.waiting = TARGET_PACKETS
    expect(submit(0, PACE.maxQueued + 7)).toBe(PACE.maxQueued)
    expect(pacer.waitingFor(owner)).toBe(PACE.maxQueued)
  })
})
