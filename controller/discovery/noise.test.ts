// The discovery decoder against real wireguard-go initiations (captured once, below) and against
// messages built here and altered one field at a time.
import {generateKeyPairSync} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {
  buildInitiation,
  InitiationDecoder,
  MESSAGE_LAYOUT,
  resealMac1,
  tai64nFromUnixMs,
  tai64nToUnixMs,
  type DecodeResult,
} from './noise.js'

// Captured from wireguard-go 0.0.20220316 (Debian) in a network namespace: `wg set IF private-key
// <initiatorPrivate> listen-port 51999 peer <responderPublic> endpoint 127.0.0.1:51820
// persistent-keepalive 1`, a UDP socket on 127.0.0.1:51820 printing each datagram
// (discovery.root.test.ts does the same live). `capturedAt` is the receiver's Date.now().
const REAL = {
  responderPrivate: 'SFsQv8yi6yhAc7kGTd01qoegDsOtWpfgRKYAn1+vWmg=',
  responderPublic: 'AqXGiQs4sw365RBlt4Yy7bBjrAHaZvWW5gSkqwcfpjE=',
  initiatorPublic: 'WbezGUThzSFrMg2QJpsEulAZq9SDs8WGBY26qkiRez4=',
  messages: [
    {
      hex:
        '010000001744a61f83406727423acda53a3a2430f292938e372207e0b0bd865733ac6938fd0ef103f498747b8d07492d' +
        '897dcecabf5364eed99b44e7ec2d8b52fb6d970e0873c1a4b912498b9365d11f4933d01f0df458a5679797400994e51f' +
        'ef5f57ad77bf71d9e71201788778b00648a7623f2dcbb02e0dbab2644795710bcf299bec000000000000000000000000' +
        '00000000',
      capturedAt: 1796220387592,
    },
    {
      hex:
        '010000004950aa5152200764cf29825ce347aad0d32e6102d6061f3efa80a59d7b33e05dec40691ff6ae8fc29100bded' +
        '2b6771698246d0ae2aae4615ff4fb07a30b70100ceaf03625461ce76ae24e056e118c3c1f6a6c79f85e4ec90d4755645' +
        'f87c1c171e4837ec490fb467b9a4fb33e0833571dc64f48e122229562fa2f9ecdfdbb358000000000000000000000000' +
        '00000000',
      capturedAt: 1796220392884,
    },
  ],
}

const privateKey = (): string => {
  const jwk = generateKeyPairSync('x25519').privateKey.export({format: 'jwk'})
  return Buffer.from(jwk.d!, 'base64url').toString('base64')
}

const acceptAll = (k: string): string => k

function ok<T>(r: DecodeResult<T>) {
  if (!r.ok) throw new Error(`expected a decoded initiation, got ${r.reason}`)
  return r
}

describe('InitiationDecoder on real wireguard-go initiations', () => {
  it('reads the initiator public key, sender index, ephemeral and a timestamp at the capture time', () => {
    const d = new InitiationDecoder(REAL.responderPrivate)
    expect(d.publicKey).toBe(REAL.responderPublic)
    const decoded = REAL.messages.map((m) => {
      const r = ok(d.decode(Buffer.from(m.hex, 'hex'), acceptAll))
      expect(r.initiation.initiatorStatic).toBe(REAL.initiatorPublic)
      expect(r.peer).toBe(REAL.initiatorPublic)
      expect(r.initiation.ephemeral).toBe(Buffer.from(m.hex, 'hex').subarray(8, 40).toString('base64'))
      // wireguard-go rounds the nanoseconds down to 2^24 ns (≈ 17 ms) against timing leaks.
      const lag = m.capturedAt - tai64nToUnixMs(r.initiation.timestamp)
      expect(lag).toBeGreaterThanOrEqual(0)
      expect(lag).toBeLessThan(100)
      return r.initiation
    })
    expect(decoded[0]!.senderIndex).toBe(0x1fa64417)
    expect(decoded[1]!.timestamp).toBeGreaterThan(decoded[0]!.timestamp)
    expect(decoded[1]!.ephemeral).not.toBe(decoded[0]!.ephemeral)
  })

  it('refuses a real initiation addressed to another key at mac1, before any DH', () => {
    const d = new InitiationDecoder(privateKey())
    const r = d.decode(Buffer.from(REAL.messages[0]!.hex, 'hex'), acceptAll)
    expect(r).toEqual({ok: false, reason: 'mac1'})
    expect(d.work).toEqual({mac1Checks: 1, dh: 0})
  })
})

describe('InitiationDecoder on built and altered messages', () => {
  const responderPrivate = privateKey()
  const decoder = new InitiationDecoder(responderPrivate)
  const initiatorPrivate = privateKey()
  const build = (over: Partial<Parameters<typeof buildInitiation>[0]> = {}): Buffer =>
    buildInitiation({
      responderPublic: decoder.publicKey,
      initiatorPrivate,
      ephemeralPrivate: privateKey(),
      senderIndex: 0xdeadbeef,
      timestamp: tai64nFromUnixMs(1_800_000_000_123),
      ...over,
    })
  const initiatorPublic = new InitiationDecoder(initiatorPrivate).publicKey

  it('round-trips a message built the way WireGuard builds it', () => {
    const r = ok(decoder.decode(build(), acceptAll))
    expect(r.initiation.initiatorStatic).toBe(initiatorPublic)
    expect(r.initiation.senderIndex).toBe(0xdeadbeef)
    expect(tai64nToUnixMs(r.initiation.timestamp)).toBe(1_800_000_000_123)
  })

  it('refuses any size but 148 and any type but 1 (reserved bytes included) without crypto', () => {
    const d = new InitiationDecoder(responderPrivate)
    const msg = build()
    expect(d.decode(msg.subarray(0, 147), acceptAll)).toEqual({ok: false, reason: 'size'})
    expect(d.decode(Buffer.concat([msg, Buffer.of(0)]), acceptAll)).toEqual({ok: false, reason: 'size'})
    expect(d.decode(Buffer.alloc(0), acceptAll)).toEqual({ok: false, reason: 'size'})
    for (const [i, v] of [
      [0, 2],
      [0, 4],
      [1, 1],
      [3, 0x80],
    ] as const) {
      const bad = Buffer.from(msg)
      bad[i] = i === 0 ? v : bad[i]! ^ v
      expect(d.decode(bad, acceptAll)).toEqual({ok: false, reason: 'type'})
    }
    expect(d.work).toEqual({mac1Checks: 0, dh: 0})
  })

  // A flipped byte anywhere under mac1 fails mac1 first (no DH). Re-sealing mac1 (anyone holding
  // our public key can) reaches the Noise checks, which name the field.
  const fields: [keyof typeof MESSAGE_LAYOUT, string | 'ok'][] = [
    ['sender', 'ok'], // not authenticated by Noise: WireGuard reads it as given
    ['ephemeral', 'static'],
    ['static', 'static'],
    ['timestamp', 'timestamp'],
  ]
  for (const [field, reason] of fields) {
    it(`a flipped ${field} byte fails mac1 as sent, and ${reason === 'ok' ? 'decodes' : `fails '${reason}'`} once mac1 is re-sealed`, () => {
      const [off, len] = MESSAGE_LAYOUT[field]
      for (const at of [off, off + len - 1]) {
        const msg = build()
        msg[at] = msg[at]! ^ 0x01
        const d = new InitiationDecoder(responderPrivate)
        expect(d.decode(msg, acceptAll)).toEqual({ok: false, reason: 'mac1'})
        expect(d.work.dh).toBe(0)
        resealMac1(msg, d.publicKey)
        const r = d.decode(msg, acceptAll)
        if (reason === 'ok') expect(ok(r).initiation.initiatorStatic).toBe(initiatorPublic)
        else expect(r).toMatchObject({ok: false, reason})
      }
    })
  }

  it('a flipped mac1 byte fails mac1; mac2 is not checked (we never send cookies)', () => {
    const d = new InitiationDecoder(responderPrivate)
    for (const at of [116, 131]) {
      const msg = build()
      msg[at] = msg[at]! ^ 0x80
      expect(d.decode(msg, acceptAll)).toEqual({ok: false, reason: 'mac1'})
    }
    const msg = build()
    msg[140] = 0x55
    expect(d.decode(msg, acceptAll).ok).toBe(true)
  })

  it('refuses a low-order ephemeral (all-zero DH) as ephemeral', () => {
    const msg = build()
    msg.fill(0, 8, 40)
    resealMac1(msg, decoder.publicKey)
    expect(decoder.decode(msg, acceptAll)).toEqual({ok: false, reason: 'ephemeral'})
  })

  it('stops an unknown static key after one DH and never makes the second', () => {
    const d = new InitiationDecoder(responderPrivate)
    const seen: string[] = []
    const r = d.decode(build(), (k) => {
      seen.push(k)
      return undefined
    })
    expect(r).toEqual({ok: false, reason: 'unknown-key', initiatorStatic: initiatorPublic})
    expect(seen).toEqual([initiatorPublic])
    expect(d.work).toEqual({mac1Checks: 1, dh: 1})
    ok(d.decode(build(), acceptAll))
    expect(d.work).toEqual({mac1Checks: 2, dh: 3})
  })

  it("makes the static-static DH once per node key: a node's later initiations cost one DH", () => {
    const d = new InitiationDecoder(responderPrivate)
    for (let i = 0; i < 3; i++) ok(d.decode(build(), acceptAll))
    expect(d.work.dh).toBe(2 + 1 + 1)
    const other = privateKey()
    ok(d.decode(build({initiatorPrivate: other}), acceptAll))
    expect(d.work.dh).toBe(4 + 2)
  })

  it('keeps the static-static cache bounded (LRU) and can do without it', () => {
    const small = new InitiationDecoder(responderPrivate, {staticCacheSize: 1})
    const other = privateKey()
    for (const k of [initiatorPrivate, other, initiatorPrivate])
      ok(small.decode(build({initiatorPrivate: k}), acceptAll))
    expect(small.work.dh).toBe(6) // each key evicted the other
    const none = new InitiationDecoder(responderPrivate, {staticCacheSize: 0})
    for (let i = 0; i < 2; i++) ok(none.decode(build(), acceptAll))
    expect(none.work.dh).toBe(4)
  })

  it('refuses a forgery that claims a known node key without holding its private key', () => {
    const d = new InitiationDecoder(responderPrivate)
    const forged = build({initiatorPrivate: privateKey(), claimedStatic: initiatorPublic})
    expect(d.decode(forged, (k) => (k === initiatorPublic ? {nodeId: 'n1'} : undefined))).toEqual({
      ok: false,
      reason: 'timestamp',
      initiatorStatic: initiatorPublic,
    })
  })

  it('passes what accept returned through as peer', () => {
    const r = ok(decoder.decode(build(), () => ({nodeId: 'node-7'})))
    expect(r.peer).toEqual({nodeId: 'node-7'})
  })

  it('refuses a private key that is not 32 bytes of base64', () => {
    expect(() => new InitiationDecoder('abc')).toThrow(/32 bytes/)
    expect(() => new InitiationDecoder(Buffer.alloc(31).toString('base64'))).toThrow(/32 bytes/)
  })
})
