import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {
  decodeRelayFrame,
  decodeRelayMessage,
  encodeRelayBatch,
  encodeRelayFrame,
  isRelayPeerId,
  RELAY_FRAME_BATCH,
  RELAY_MAX_BATCH_BYTES,
  RELAY_MAX_BATCH_PACKETS,
  RELAY_MAX_PAYLOAD,
  relayBatchBytes,
  RelayFrameError,
  relayFrameHeader,
  relayMaxFrameBytes,
  relayMaxMessageBytes,
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
      ['an unknown type', frame([3, 1], 'a', [0]), 'FRAME_BAD_TYPE'],
      ['a batch (only decodeRelayMessage reads those)', frame([2, 1], 'a', [0, 1, 0]), 'FRAME_BAD_TYPE'],
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

describe('relay batch codec', () => {
  it('encodes type 2, the id, then a 2-byte big-endian length before each packet', () => {
    const out = encodeRelayBatch('nd_b', [Buffer.from([0xde, 0xad]), Buffer.from([0xbe])])
    expect([...out]).toEqual([2, 4, 0x6e, 0x64, 0x5f, 0x62, 0, 2, 0xde, 0xad, 0, 1, 0xbe])
    expect(out.length).toBe(relayBatchBytes(4, 2, 3))
    const header = relayFrameHeader('nd_b', RELAY_FRAME_BATCH)
    expect(
      encodeRelayBatch('nd_b', [Buffer.from([1])], {header}).equals(
        encodeRelayBatch('nd_b', [Buffer.from([1])]),
      ),
    ).toBe(true)
  })

  it('decodes every packet in order, as views into the message', () => {
    const packets = Array.from({length: 44}, (_, i) => Buffer.alloc(1452, i))
    const encoded = encodeRelayBatch('nd_a', packets)
    expect(encoded.length).toBeLessThanOrEqual(RELAY_MAX_BATCH_BYTES)
    const m = decodeRelayMessage(encoded)
    expect(m.type).toBe(RELAY_FRAME_BATCH)
    expect(m.peerId).toBe('nd_a')
    expect(m.payloads.map((p) => p[0])).toEqual(packets.map((_, i) => i))
    expect(m.payloads.every((p, i) => p.equals(packets[i]!) && p.buffer === encoded.buffer)).toBe(true)
    expect(encoded.subarray(m.bodyAt).equals(encodeRelayBatch('x', packets).subarray(3))).toBe(true)
  })

  it('decodeRelayMessage reads a data frame as one packet', () => {
    const m = decodeRelayMessage(encodeRelayFrame('nd_a', Buffer.from('hi')))
    expect([m.type, m.peerId, m.payloads.map(String), m.bodyAt]).toEqual([1, 'nd_a', ['hi'], 6])
  })

  it('round-trips any valid id and packets', () => {
    const idChar = fc.integer({min: 0x21, max: 0x7e}).map((c) => String.fromCharCode(c))
    fc.assert(
      fc.property(
        fc.array(idChar, {minLength: 1, maxLength: 100}).map((a) => a.join('')),
        fc.array(fc.uint8Array({minLength: 1, maxLength: RELAY_MAX_PAYLOAD}), {minLength: 1, maxLength: 20}),
        (id, packets) => {
          const m = decodeRelayMessage(encodeRelayBatch(id, packets))
          expect(m.peerId).toBe(id)
          expect(m.payloads.map((p) => [...p])).toEqual(packets.map((p) => [...p]))
        },
      ),
      {numRuns: 300},
    )
  })

  describe('rejects a malformed batch whole, with a typed error', () => {
    const ok = [0, 1, 9]
    it.each([
      ['a batch without entries', frame([2, 1], 'a'), 'FRAME_TOO_SHORT'],
      ['an id length of 0', frame([2, 0], [0, 2, 9, 9]), 'FRAME_BAD_ID_LENGTH'],
      ['an id length over 100', frame([2, 101], 'a'.repeat(101), ok), 'FRAME_BAD_ID_LENGTH'],
      ['a batch that ends inside the id', frame([2, 10], 'abcd'), 'FRAME_TOO_SHORT'],
      ['an id with a space', frame([2, 3], 'a b', ok), 'FRAME_BAD_ID'],
      ['an entry of length 0', frame([2, 1], 'a', ok, [0, 0]), 'FRAME_EMPTY_PAYLOAD'],
      ['a trailing half length', frame([2, 1], 'a', ok, [0]), 'FRAME_BAD_BATCH'],
      ['an entry longer than the rest', frame([2, 1], 'a', ok, [0, 5, 1, 2]), 'FRAME_BAD_BATCH'],
      [
        'an entry over maxPayload',
        frame(
          [2, 1],
          'a',
          [(RELAY_MAX_PAYLOAD + 1) >> 8, (RELAY_MAX_PAYLOAD + 1) & 0xff],
          Buffer.alloc(RELAY_MAX_PAYLOAD + 1),
        ),
        'FRAME_TOO_LARGE',
      ],
      [
        'a message over RELAY_MAX_BATCH_BYTES',
        frame([2, 1], 'a', Buffer.alloc(RELAY_MAX_BATCH_BYTES)),
        'FRAME_TOO_LARGE',
      ],
      [
        `over ${RELAY_MAX_BATCH_PACKETS} entries`,
        frame([2, 1], 'a', ...Array.from({length: RELAY_MAX_BATCH_PACKETS + 1}, () => ok)),
        'FRAME_BAD_BATCH',
      ],
      ['type 3', frame([3, 1], 'a', ok), 'FRAME_BAD_TYPE'],
    ])('%s', (_name, data, code) => {
      expect(codeOf(() => decodeRelayMessage(data))).toBe(code)
    })

    it('random bytes never throw anything but RelayFrameError', () => {
      fc.assert(
        fc.property(fc.uint8Array({maxLength: 3000}), fc.boolean(), (data, batch) => {
          if (batch && data.length > 0) data[0] = RELAY_FRAME_BATCH
          try {
            decodeRelayMessage(data)
          } catch (err) {
            expect(err).toBeInstanceOf(RelayFrameError)
          }
        }),
        {numRuns: 2000},
      )
    })
  })

  it('refuses to encode what it would refuse to decode', () => {
    expect(codeOf(() => encodeRelayBatch('a', []))).toBe('FRAME_BAD_BATCH')
    expect(codeOf(() => encodeRelayBatch('a', [Buffer.from('x'), Buffer.alloc(0)]))).toBe(
      'FRAME_EMPTY_PAYLOAD',
    )
    expect(codeOf(() => encodeRelayBatch('a', [Buffer.alloc(RELAY_MAX_PAYLOAD + 1)]))).toBe('FRAME_TOO_LARGE')
    expect(
      codeOf(() =>
        encodeRelayBatch(
          'a',
          Array.from({length: 46}, () => Buffer.alloc(1452)),
        ),
      ),
    ).toBe('FRAME_TOO_LARGE')
    expect(
      codeOf(() =>
        encodeRelayBatch(
          'a',
          Array.from({length: 257}, () => Buffer.from('x')),
        ),
      ),
    ).toBe('FRAME_BAD_BATCH')
    expect(codeOf(() => encodeRelayBatch('a b', [Buffer.from('x')]))).toBe('FRAME_BAD_ID')
  })

  it('the largest message is a full batch; a data frame fits in it', () => {
    expect(relayMaxMessageBytes()).toBe(RELAY_MAX_BATCH_BYTES)
    expect(relayMaxFrameBytes()).toBeLessThan(RELAY_MAX_BATCH_BYTES)
  })
})
