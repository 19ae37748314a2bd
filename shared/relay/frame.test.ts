import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {
  decodeRelayFrame,
  encodeRelayFrame,
  isRelayPeerId,
  RELAY_MAX_PAYLOAD,
  RelayFrameError,
  relayFrameHeader,
  relayMaxFrameBytes,
} from './frame.js'

const codeOf = (fn: () => unknown): string => {
  try {
    fn()
  } catch (err) {
    if (err instanceof RelayFrameError) return err.code
    throw err
  }
  return 'no error'
}

const frame = (...parts: (number[] | string | Buffer)[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))))

describe('relay frame codec', () => {
  it('encodes type 1, the id length, the id and the payload, in that order', () => {
    const out = encodeRelayFrame('nd_b', Buffer.from([0xde, 0xad]))
    expect([...out]).toEqual([1, 4, 0x6e, 0x64, 0x5f, 0x62, 0xde, 0xad])
  })

  it('decodes what it encodes, without copying the payload', () => {
    const payload = Buffer.alloc(1452, 7)
    const encoded = encodeRelayFrame('nd_abcDEF-123', payload)
    const f = decodeRelayFrame(encoded)
    expect(f.peerId).toBe('nd_abcDEF-123')
    expect(f.payload.equals(payload)).toBe(true)
    expect(f.payload.buffer).toBe(encoded.buffer)
  })

  it('a reused header gives the same bytes as a fresh one', () => {
    const header = relayFrameHeader('peer')
    const p = Buffer.from('x')
    expect(encodeRelayFrame('peer', p, {header}).equals(encodeRelayFrame('peer', p))).toBe(true)
  })

  it('round-trips any valid id and payload', () => {
    const idChar = fc.integer({min: 0x21, max: 0x7e}).map((c) => String.fromCharCode(c))
    fc.assert(
      fc.property(
        fc.array(idChar, {minLength: 1, maxLength: 100}).map((a) => a.join('')),
        fc.uint8Array({minLength: 1, maxLength: RELAY_MAX_PAYLOAD}),
        (id, payload) => {
          const f = decodeRelayFrame(encodeRelayFrame(id, payload))
          expect(f.peerId).toBe(id)
          expect(Buffer.compare(f.payload, payload)).toBe(0)
        },
      ),
    )
  })

  it('accepts a Uint8Array that is a view into a larger buffer', () => {
    const backing = new Uint8Array(16)
    backing.set([1, 1, 0x41, 9, 9], 5)
    const f = decodeRelayFrame(backing.subarray(5, 10))
    expect(f.peerId).toBe('A')
    expect([...f.payload]).toEqual([9, 9])
  })

  describe('rejects malformed frames with a typed error', () => {
    it.each([
      ['an empty message', frame([]), 'FRAME_TOO_SHORT'],
      ['a header without id or payload', frame([1, 1]), 'FRAME_TOO_SHORT'],
      ['an unknown type', frame([2, 1], 'a', [0]), 'FRAME_BAD_TYPE'],
      ['type 0', frame([0, 1], 'a', [0]), 'FRAME_BAD_TYPE'],
      ['an id length of 0', frame([1, 0], [0, 0]), 'FRAME_BAD_ID_LENGTH'],
      ['an id length over 100', frame([1, 101], 'a'.repeat(101), [0]), 'FRAME_BAD_ID_LENGTH'],
      ['a frame that ends inside the id', frame([1, 10], 'abc'), 'FRAME_TOO_SHORT'],
      ['an id with a space', frame([1, 3], 'a b', [0]), 'FRAME_BAD_ID'],
      ['an id with a control byte', frame([1, 2], [0x61, 0x00], [0]), 'FRAME_BAD_ID'],
      ['an id with a non-ASCII byte', frame([1, 2], [0x61, 0xc3], [0]), 'FRAME_BAD_ID'],
      ['no payload', frame([1, 3], 'abc'), 'FRAME_EMPTY_PAYLOAD'],
      [
        'a payload over the limit',
        frame([1, 1], 'a', Buffer.alloc(RELAY_MAX_PAYLOAD + 1)),
        'FRAME_TOO_LARGE',
      ],
    ])('%s', (_name, data, code) => {
      expect(codeOf(() => decodeRelayFrame(data))).toBe(code)
    })

    it('a payload exactly at the limit is accepted; the limit can be lowered', () => {
      const f = frame([1, 1], 'a', Buffer.alloc(RELAY_MAX_PAYLOAD))
      expect(decodeRelayFrame(f).payload.length).toBe(RELAY_MAX_PAYLOAD)
      expect(codeOf(() => decodeRelayFrame(f, {maxPayload: 100}))).toBe('FRAME_TOO_LARGE')
    })

    it('random bytes never throw anything but RelayFrameError', () => {
      fc.assert(
        fc.property(fc.uint8Array({maxLength: relayMaxFrameBytes() + 10}), (data) => {
          try {
            decodeRelayFrame(data)
          } catch (err) {
            expect(err).toBeInstanceOf(RelayFrameError)
          }
        }),
        {numRuns: 2000},
      )
    })
  })

  it('refuses to encode what it would refuse to decode', () => {
    expect(codeOf(() => encodeRelayFrame('', Buffer.from('x')))).toBe('FRAME_BAD_ID')
    expect(codeOf(() => encodeRelayFrame('a'.repeat(101), Buffer.from('x')))).toBe('FRAME_BAD_ID')
    expect(codeOf(() => encodeRelayFrame('é', Buffer.from('x')))).toBe('FRAME_BAD_ID')
    expect(codeOf(() => encodeRelayFrame('a', Buffer.alloc(0)))).toBe('FRAME_EMPTY_PAYLOAD')
    expect(codeOf(() => encodeRelayFrame('a', Buffer.alloc(RELAY_MAX_PAYLOAD + 1)))).toBe('FRAME_TOO_LARGE')
    expect(isRelayPeerId('nd_x')).toBe(true)
    expect(isRelayPeerId('nd x')).toBe(false)
  })
})
