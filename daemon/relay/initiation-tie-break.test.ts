import {describe, expect, it} from 'vitest'
import {initiationWinner, InitiationTieBreak, REKEY_TIMEOUT_MS} from './initiation-tie-break.js'

/** A WireGuard-shaped message: type byte, three zero bytes, then `fill` up to `size`. */
const msg = (type: number, size: number, fill = 7): Buffer => {
  const b = Buffer.alloc(size, fill)
  b.writeUInt32LE(type, 0)
  return b
}
const initiation = (fill = 7): Buffer => msg(1, 148, fill)
const response = (): Buffer => msg(2, 92)
const data = (): Buffer => msg(4, 96)

function setup(wins = true) {
  let t = 1_000_000
  const tb = new InitiationTieBreak(wins, () => t)
  return {tb, advance: (ms: number) => (t += ms)}
}

describe('InitiationTieBreak', () => {
  it("holds back the peer's initiation while ours is unanswered and resends ours instead", () => {
    const {tb, advance} = setup()
    const ours = initiation(1)
    tb.outgoing(ours)
    ours.fill(0) // the caller may reuse its buffer
    advance(20)
    const d = tb.incoming(initiation(2))
    expect(d.deliver).toBe(false)
    expect(d.deliver === false && d.resend).toEqual(initiation(1))
  })

  it('holds back only one initiation per own initiation, so a lost response cannot stall the pair', () => {
    const {tb, advance} = setup()
    tb.outgoing(initiation(1))
    expect(tb.incoming(initiation(2)).deliver).toBe(false)
    advance(100)
    expect(tb.incoming(initiation(3)).deliver).toBe(true)
    expect(tb.incoming(initiation(4)).deliver).toBe(true)
  })

  it('lets every initiation through once ours was answered', () => {
    const {tb} = setup()
    tb.outgoing(initiation(1))
    expect(tb.incoming(response()).deliver).toBe(true)
    expect(tb.incoming(initiation(2)).deliver).toBe(true)
  })

  it('lets the peer initiate once our initiation is older than WireGuard retry interval', () => {
    const {tb, advance} = setup()
    tb.outgoing(initiation(1))
    advance(REKEY_TIMEOUT_MS)
    expect(tb.incoming(initiation(2)).deliver).toBe(true)
  })

  it('never holds anything back on the side that loses races', () => {
    const {tb} = setup(false)
    tb.outgoing(initiation(1))
    expect(tb.incoming(initiation(2)).deliver).toBe(true)
  })

  it('passes data, cookies and malformed packets untouched, and ignores non-initiations we send', () => {
    const {tb} = setup()
    tb.outgoing(data())
    tb.outgoing(msg(1, 100)) // wrong size: not an initiation
    expect(tb.incoming(initiation(2)).deliver).toBe(true)
    tb.outgoing(initiation(1))
    expect(tb.incoming(data()).deliver).toBe(true)
    expect(tb.incoming(msg(3, 64)).deliver).toBe(true)
    expect(tb.incoming(Buffer.from([1])).deliver).toBe(true)
    const odd = initiation(2)
    odd[2] = 9 // reserved bytes must be zero
    expect(tb.incoming(odd).deliver).toBe(true)
    expect(tb.incoming(initiation(2)).deliver).toBe(false)
  })

  it('picks exactly one winner per pair', () => {
    expect(initiationWinner('nd_a', 'nd_b')).toBe(true)
    expect(initiationWinner('nd_b', 'nd_a')).toBe(false)
  })
})
