import {createRequire} from 'node:module'
import {describe, expect, it} from 'vitest'
import {
  ATTR,
  MAX_ATTRIBUTES,
  MAX_MESSAGE_BYTES,
  METHOD_BINDING,
  StunDecodeError,
  StunEncodeError,
  bindingRequest,
  decodeMessage,
  encodeMessage,
  findAttribute,
  messageType,
  tryDecodeMessage,
  unknownRequiredAttributes,
  type StunMessage,
} from './codec.js'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

// RFC 5769 test vectors, as printed in the RFC (padding of SOFTWARE/USERNAME is 0x20 there on
// purpose: receivers must ignore padding).
const RFC5769 = {
  request: hex(`00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf`),
  ipv4Response: hex(`01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96`),
  ipv6Response: hex(`01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c`),
  longTerm: hex(`00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66`),
}
const VECTOR_TID = hex('b7e7a701bc34d686fa87dfae')

/** Decodes or returns the StunDecodeError; any other exception fails the test. */
function decodeOrReason(b: Uint8Array): StunMessage | string {
  try {
    return decodeMessage(b)
  } catch (err) {
    expect(err).toBeInstanceOf(StunDecodeError)
    return (err as StunDecodeError).reason
  }
}

describe('RFC 5769 test vectors', () => {
  it('decodes the sample request (2.1) with its SOFTWARE and a matching FINGERPRINT', () => {
    const m = decodeMessage(RFC5769.request)
    expect(m.cls).toBe('request')
    expect(m.method).toBe(METHOD_BINDING)
    expect(m.transactionId).toEqual(VECTOR_TID)
    expect(m.fingerprint).toBe(true)
    expect(findAttribute(m, 'software')?.text).toBe('STUN test client')
    const opaque = m.attributes.filter((a) => a.kind === 'opaque').map((a) => a.type)
    expect(opaque).toEqual([0x0024, 0x8029, ATTR.USERNAME, ATTR.MESSAGE_INTEGRITY])
    // PRIORITY (0x0024) is comprehension-required and ours to refuse with 420; USERNAME and
    // MESSAGE-INTEGRITY are tolerated without authentication.
    expect(unknownRequiredAttributes(m)).toEqual([0x0024])
  })

  it('decodes the IPv4 response (2.2): XOR-MAPPED-ADDRESS 192.0.2.1:32853', () => {
    const m = decodeMessage(RFC5769.ipv4Response)
    expect(m.cls).toBe('success')
    expect(m.fingerprint).toBe(true)
    expect(findAttribute(m, 'software')?.text).toBe('test vector')
    expect(findAttribute(m, 'xor-mapped-address')?.address).toEqual({
      family: 4,
      address: '192.0.2.1',
      port: 32853,
    })
  })

  it('decodes the IPv6 response (2.3): XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853', () => {
    const m = decodeMessage(RFC5769.ipv6Response)
    expect(findAttribute(m, 'xor-mapped-address')?.address).toEqual({
      family: 6,
      address: '2001:db8:1234:5678:11:2233:4455:6677',
      port: 32853,
    })
  })

  it('decodes the long-term-credential request (2.4), which has no FINGERPRINT', () => {
    const m = decodeMessage(RFC5769.longTerm)
    expect(m.fingerprint).toBe(false)
    const username = m.attributes.find((a) => a.kind === 'opaque' && a.type === ATTR.USERNAME)
    expect(username?.kind === 'opaque' && username.value.toString('utf8')).toBe('マトリックス')
    expect(unknownRequiredAttributes(m)).toEqual([])
  })

  it('encodes XOR-MAPPED-ADDRESS byte for byte as the vectors do (IPv4 and IPv6)', () => {
    const v4 = encodeMessage({
      cls: 'success',
      method: METHOD_BINDING,
      transactionId: VECTOR_TID,
      attributes: [{kind: 'xor-mapped-address', address: {family: 4, address: '192.0.2.1', port: 32853}}],
    })
    expect(v4.subarray(20)).toEqual(hex('00 20 00 08 00 01 a1 47 e1 12 a6 43'))
    const v6 = encodeMessage({
      cls: 'success',
      method: METHOD_BINDING,
      transactionId: VECTOR_TID,
      attributes: [
        {
          kind: 'xor-mapped-address',
          address: {family: 6, address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853},
        },
      ],
    })
    expect(v6.subarray(20)).toEqual(
      hex('00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9'),
    )
  })

  it('re-encodes each vector so that it decodes to the same message (padding and FINGERPRINT rewritten)', () => {
    for (const v of Object.values(RFC5769)) {
      const m = decodeMessage(v)
      const again = encodeMessage(m)
      expect(again.length).toBe(v.length)
      expect(decodeMessage(again)).toEqual(m)
    }
  })
})

describe('message type and attributes', () => {
  it.each([
    ['request', 0x001, 0x0001],
    ['indication', 0x001, 0x0011],
    ['success', 0x001, 0x0101],
    ['error', 0x001, 0x0111],
    ['error', 0xfff, 0x3fff],
    ['request', 0x003, 0x0003],
  ] as const)('interleaves class %s and method %i into type 0x%s', (cls, method, type) => {
    expect(messageType(cls, method)).toBe(type)
    const m = decodeMessage(encodeMessage({cls, method, transactionId: Buffer.alloc(12, 7), attributes: []}))
    expect([m.cls, m.method]).toEqual([cls, method])
  })

  it('round-trips every attribute we interpret, IPv4 and IPv6, with a FINGERPRINT', () => {
    const msg: StunMessage = {
      cls: 'error',
      method: METHOD_BINDING,
      transactionId: Buffer.from('0123456789ab'),
      fingerprint: true,
      attributes: [
        {kind: 'xor-mapped-address', address: {family: 6, address: '::ffff:198.51.100.7', port: 1}},
        {kind: 'mapped-address', address: {family: 4, address: '203.0.113.9', port: 65535}},
        {kind: 'response-origin', address: {family: 6, address: 'fe80::1:2:3:4', port: 3478}},
        {kind: 'other-address', address: {family: 6, address: '::', port: 3479}},
        {kind: 'change-request', changeIp: true, changePort: false},
        {kind: 'error-code', code: 420, reason: 'Unknown Attribute'},
        {kind: 'unknown-attributes', types: [0x0024, 0x0027, 0x7fff]},
        {kind: 'software', text: 'mesh ✓'},
        {kind: 'opaque', type: 0x8029, value: Buffer.from([1, 2, 3])},
      ],
    }
    const bytes = encodeMessage(msg)
    expect(bytes.length % 4).toBe(0)
    expect(decodeMessage(bytes)).toEqual(msg)
  })

  it('builds a Binding request with CHANGE-REQUEST flags 0x4 (IP) and 0x2 (port)', () => {
    const tid = Buffer.alloc(12, 1)
    const bytes = encodeMessage(bindingRequest(tid, {changeIp: true, changePort: true}))
    expect(bytes.subarray(20, 28)).toEqual(hex('00 03 00 04 00 00 00 06'))
    expect(findAttribute(decodeMessage(bytes), 'change-request')).toEqual({
      kind: 'change-request',
      changeIp: true,
      changePort: true,
    })
  })

  it('refuses to encode what it cannot write', () => {
    const base = {cls: 'success', method: METHOD_BINDING, transactionId: Buffer.alloc(12)} as const
    const bad: StunMessage[] = [
      {...base, transactionId: Buffer.alloc(11), attributes: []},
      {...base, attributes: [{kind: 'mapped-address', address: {family: 4, address: '::1', port: 1}}]},
      {...base, attributes: [{kind: 'mapped-address', address: {family: 6, address: '1.2.3.4', port: 1}}]},
      {
        ...base,
        attributes: [{kind: 'mapped-address', address: {family: 4, address: '1.2.3.4', port: 70000}}],
      },
      {...base, attributes: [{kind: 'error-code', code: 200, reason: ''}]},
      {...base, attributes: [{kind: 'software', text: 'x'.repeat(764)}]},
      {...base, attributes: [{kind: 'opaque', type: 0x8050, value: Buffer.alloc(MAX_MESSAGE_BYTES)}]},
    ]
    for (const m of bad) expect(() => encodeMessage(m)).toThrow(StunEncodeError)
  })
})

describe('cross-check with the `stun` npm package', () => {
  // The reference implementation (CommonJS, untyped); used only here, never on the network path.
  interface RefAttr {
    value: unknown
  }
  interface RefMessage {
    type: number
    transactionId: Buffer
    getAttribute(type: number): RefAttr | undefined
    addXorAddress(address: string, port: number): void
    addAddress(address: string, port: number): void
    addAttribute(type: number, ...args: unknown[]): void
    addSoftware(text: string): void
    addError(code: number, reason: string): void
    addFingerprint(): void
    toBuffer(): Buffer
  }
  const ref = createRequire(import.meta.url)('stun') as {
    createMessage(type: number, tid?: Buffer): RefMessage
    decode(b: Buffer): RefMessage
    validateFingerprint(m: RefMessage): boolean
  }

  it('decodes what our encoder writes', () => {
    const tid = Buffer.from('abcdefghijkl')
    const ours = encodeMessage({
      cls: 'success',
      method: METHOD_BINDING,
      transactionId: tid,
      fingerprint: true,
      attributes: [
        {kind: 'xor-mapped-address', address: {family: 4, address: '198.51.100.20', port: 40000}},
        {kind: 'response-origin', address: {family: 4, address: '203.0.113.1', port: 3478}},
        {kind: 'other-address', address: {family: 6, address: '2001:db8::2', port: 3479}},
        {kind: 'software', text: 'mesh'},
      ],
    })
    const m = ref.decode(ours)
    expect(m.type).toBe(0x0101)
    expect(m.transactionId).toEqual(tid)
    expect(m.getAttribute(ATTR.XOR_MAPPED_ADDRESS)?.value).toMatchObject({
      address: '198.51.100.20',
      port: 40000,
    })
    expect(m.getAttribute(ATTR.RESPONSE_ORIGIN)?.value).toMatchObject({address: '203.0.113.1', port: 3478})
    expect(m.getAttribute(ATTR.OTHER_ADDRESS)?.value).toMatchObject({address: '2001:db8::2', port: 3479})
    expect(String(m.getAttribute(ATTR.SOFTWARE)?.value)).toBe('mesh')
    expect(ref.validateFingerprint(m)).toBe(true)
  })

  it('decodes what the reference encoder writes', () => {
    const m = ref.createMessage(0x0111)
    m.addXorAddress('2001:db8::7', 5555)
    m.addAddress('198.51.100.3', 6666)
    m.addAttribute(ATTR.CHANGE_REQUEST, 0x2)
    m.addSoftware('ref')
    m.addError(438, 'Stale Nonce')
    m.addFingerprint()
    const ours = decodeMessage(m.toBuffer())
    expect(ours.cls).toBe('error')
    expect(ours.transactionId).toEqual(m.transactionId)
    expect(ours.fingerprint).toBe(true)
    expect(findAttribute(ours, 'xor-mapped-address')?.address).toEqual({
      family: 6,
      address: '2001:db8::7',
      port: 5555,
    })
    expect(findAttribute(ours, 'mapped-address')?.address).toEqual({
      family: 4,
      address: '198.51.100.3',
      port: 6666,
    })
    expect(findAttribute(ours, 'change-request')).toMatchObject({changeIp: false, changePort: true})
    expect(findAttribute(ours, 'software')?.text).toBe('ref')
    expect(findAttribute(ours, 'error-code')).toMatchObject({code: 438, reason: 'Stale Nonce'})
  })
})

describe('malformed input', () => {
  const good = encodeMessage({
    cls: 'request',
    method: METHOD_BINDING,
    transactionId: Buffer.alloc(12, 9),
    attributes: [{kind: 'software', text: 'abc'}],
    fingerprint: true,
  })
  const mutate = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good)
    f(b)
    return b
  }
  const withBody = (body: Buffer, type = 0x0001): Buffer => {
    const h = Buffer.alloc(20)
    h.writeUInt16BE(type, 0)
    h.writeUInt16BE(body.length, 2)
    h.writeUInt32BE(0x2112a442, 4)
    return Buffer.concat([h, body])
  }
  const attr = (type: number, value: Buffer): Buffer => {
    const h = Buffer.alloc(4)
    h.writeUInt16BE(type, 0)
    h.writeUInt16BE(value.length, 2)
    return Buffer.concat([h, value, Buffer.alloc(((value.length + 3) & ~3) - value.length)])
  }

  it.each<[string, Buffer, string]>([
    ['an empty packet', Buffer.alloc(0), 'too-short'],
    ['a cut header', good.subarray(0, 19), 'too-short'],
    ['a packet over 548 bytes', Buffer.alloc(549), 'too-long'],
    ['a first byte with the top bits set', mutate((b) => (b[0]! |= 0x80)), 'not-stun'],
    ['a wrong magic cookie (RFC 3489)', mutate((b) => (b[4]! ^= 1)), 'bad-magic-cookie'],
    ['a length not a multiple of 4', mutate((b) => b.writeUInt16BE(b.readUInt16BE(2) + 2, 2)), 'bad-length'],
    ['a length shorter than the packet', mutate((b) => b.writeUInt16BE(4, 2)), 'bad-length'],
    ['a truncated packet', good.subarray(0, good.length - 4), 'bad-length'],
    ['an attribute running past the end', mutate((b) => b.writeUInt16BE(200, 22)), 'truncated-attribute'],
    ['a flipped bit under the FINGERPRINT', mutate((b) => (b[25]! ^= 1)), 'bad-fingerprint'],
    [
      'an attribute after FINGERPRINT',
      withBody(Buffer.concat([good.subarray(20), attr(0x8022, Buffer.from('x'))])),
      'attribute-after-fingerprint',
    ],
    ['an unknown address family', withBody(attr(0x0020, hex('00 03 00 01 01 02 03 04'))), 'bad-attribute'],
    [
      'an IPv4 address with IPv6 length',
      withBody(attr(0x0001, Buffer.alloc(20, 0).fill(1, 1, 2))),
      'bad-attribute',
    ],
    ['a short address', withBody(attr(0x802b, hex('00 01 00'))), 'bad-attribute'],
    ['a CHANGE-REQUEST of 2 bytes', withBody(attr(0x0003, hex('00 06'))), 'bad-attribute'],
    ['an ERROR-CODE of class 2', withBody(attr(0x0009, hex('00 00 02 00'))), 'bad-attribute'],
    ['an ERROR-CODE number of 100', withBody(attr(0x0009, hex('00 00 04 64'))), 'bad-attribute'],
    ['SOFTWARE that is not UTF-8', withBody(attr(0x8022, hex('c3 28'))), 'bad-attribute'],
    ['a packet carrying 764 bytes of SOFTWARE', withBody(attr(0x8022, Buffer.alloc(764, 0x61))), 'too-long'],
    ['an odd UNKNOWN-ATTRIBUTES', withBody(attr(0x000a, hex('00 24 00'))), 'bad-attribute'],
    ['a FINGERPRINT of 8 bytes', withBody(attr(0x8028, Buffer.alloc(8))), 'bad-attribute'],
    [
      'XOR-MAPPED-ADDRESS twice',
      withBody(
        Buffer.concat([
          attr(0x0020, hex('00 01 00 01 01 02 03 04')),
          attr(0x0020, hex('00 01 00 02 01 02 03 04')),
        ]),
      ),
      'duplicate-attribute',
    ],
    [
      'more attributes than allowed',
      withBody(Buffer.concat(new Array(MAX_ATTRIBUTES + 1).fill(attr(0x8050, Buffer.alloc(0))))),
      'too-many-attributes',
    ],
  ])('refuses %s with a typed reason', (_name, packet, reason) => {
    expect(decodeOrReason(packet)).toBe(reason)
    const r = tryDecodeMessage(packet)
    expect(r.ok).toBe(false)
  })

  it('ignores the value of padding bytes (RFC 5389 §15)', () => {
    const body = Buffer.concat([attr(0x8022, Buffer.from('a')), attr(0x0003, hex('00 00 00 04'))])
    body.fill(0xff, 5, 8)
    const m = decodeMessage(withBody(body))
    expect(findAttribute(m, 'software')?.text).toBe('a')
    expect(findAttribute(m, 'change-request')?.changeIp).toBe(true)
  })
})

describe('fuzz-ish: random and mutated input', () => {
  /** xorshift32: deterministic, so a failure reproduces from its seed. */
  const rng = (seed: number) => () => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) / 0x100000000
  }
  const seeds = [
    ...Object.values(RFC5769),
    encodeMessage(bindingRequest(Buffer.alloc(12, 3), {changeIp: true, changePort: false})),
    encodeMessage({
      cls: 'success',
      method: METHOD_BINDING,
      transactionId: Buffer.alloc(12, 5),
      fingerprint: true,
      attributes: [
        {kind: 'xor-mapped-address', address: {family: 6, address: '2001:db8::1', port: 9}},
        {kind: 'other-address', address: {family: 4, address: '203.0.113.2', port: 3479}},
        {kind: 'error-code', code: 420, reason: 'x'},
        {kind: 'unknown-attributes', types: [1, 2]},
      ],
    }),
  ]
  const ITERATIONS = 20_000

  it(`decodes ${ITERATIONS} random, truncated, bit-flipped and TLV-soup packets or refuses them with StunDecodeError only`, () => {
    const rand = rng(0x5eed1234)
    const int = (n: number) => Math.floor(rand() * n)
    let decoded = 0
    for (let i = 0; i < ITERATIONS; i++) {
      const seed = seeds[i % seeds.length]!
      let buf: Buffer
      switch (i % 5) {
        case 0:
          buf = Buffer.from(Array.from({length: int(120)}, () => int(256)))
          break
        case 1:
          buf = seed.subarray(0, int(seed.length + 1))
          break
        case 2: {
          buf = Buffer.from(seed)
          for (let k = 0; k <= i % 4; k++) buf[int(buf.length)]! ^= 1 << int(8)
          break
        }
        case 3: {
          // A valid header and random attributes: exercises every attribute parser.
          const body = Buffer.from(Array.from({length: 4 * int(40)}, () => int(256)))
          const types = [0x0001, 0x0003, 0x0009, 0x000a, 0x0020, 0x8022, 0x8028, 0x802b, 0x802c]
          for (let off = 0; off + 4 <= body.length; off += 4 + 4 * int(6)) {
            body.writeUInt16BE(types[int(types.length)]!, off)
            body.writeUInt16BE(int(24), off + 2)
          }
          buf = withHeader(body)
          break
        }
        default: {
          // A valid message with one byte of the body replaced: attribute values stay aligned.
          buf = Buffer.from(seed)
          if (buf.length > 20) buf[20 + int(buf.length - 20)] = int(256)
        }
      }
      const r = decodeOrReason(buf)
      if (typeof r !== 'string') {
        decoded++
        // Whatever decodes re-encodes to something that decodes the same.
        expect(decodeMessage(encodeMessage(r))).toEqual(r)
      }
    }
    // The loop must have exercised the success path too, not only the refusals.
    expect(decoded).toBeGreaterThan(ITERATIONS / 20)
  })

  function withHeader(body: Buffer): Buffer {
    const h = Buffer.alloc(20)
    h.writeUInt16BE(0x0101, 0)
    h.writeUInt16BE(body.length, 2)
    h.writeUInt32BE(0x2112a442, 4)
    return Buffer.concat([h, body])
  }
})
