import zlib from 'node:zlib'
import {describe, expect, it} from 'vitest'
import {GZIP_EVERY_MS, GZIP_INLINE_MAX, PeerListGzip, storedGzipMember} from './netmap-gzip.js'

describe('storedGzipMember', () => {
  it('makes members any gzip reader inflates, alone or concatenated with deflated ones', () => {
    for (const size of [0, 1, 300, 65_535, 65_536, 200_000]) {
      const data = Buffer.alloc(size, 'x')
      data.write('{"type":"full"', 0)
      expect(zlib.gunzipSync(storedGzipMember(data)).equals(data)).toBe(true)
    }
    const out = zlib.gunzipSync(
      Buffer.concat([
        storedGzipMember(Buffer.from('{"peers":[')),
        zlib.gzipSync('{"id":"a"},{"id":"b"}'),
        storedGzipMember(Buffer.from(']}')),
      ]),
    )
    expect(JSON.parse(out.toString())).toEqual({peers: [{id: 'a'}, {id: 'b'}]})
  })

  it('keeps the text readable at a fixed offset, so the frame type shows without inflating', () => {
    const member = storedGzipMember(Buffer.from('{"type":"full","version":12'))
    expect(member.subarray(15, 15 + 27).toString()).toBe('{"type":"full","version":12')
  })
})

describe('PeerListGzip', () => {
  const list = (text: string) => ({bytes: Buffer.from(text)})

  it('gzips a small list once and serves the same bytes until the list changes', () => {
    let now = 0
    const gz = new PeerListGzip(() => now)
    const a = list('{"id":"a"}')
    const first = gz.get(a)!
    expect(zlib.gunzipSync(first).toString()).toBe('{"id":"a"}')
    expect(gz.get(a)).toBe(first)
    // A change within GZIP_EVERY_MS: text for now (undefined); after it, the new list.
    const b = list('{"id":"a"},{"id":"b"}')
    now += GZIP_EVERY_MS - 1
    expect(gz.get(b)).toBeUndefined()
    now += 1
    expect(zlib.gunzipSync(gz.get(b)!).toString()).toBe('{"id":"a"},{"id":"b"}')
  })

  it('gzips a big list off the event loop and serves it once ready', async () => {
    const gz = new PeerListGzip(() => 0)
    const big = list('{"id":"x"},'.repeat(Math.ceil(GZIP_INLINE_MAX / 10)))
    expect(gz.get(big)).toBeUndefined()
    expect(gz.get(big)).toBeUndefined()
    // The thread pool's callback comes on a later turn of the event loop.
    const ready = await new Promise<Buffer>((resolve) => {
      const poll = (left: number) => {
        const out = gz.get(big)
        if (out || left === 0) resolve(out!)
        else setImmediate(() => poll(left - 1))
      }
      poll(100_000)
    })
    expect(zlib.gunzipSync(ready).equals(big.bytes)).toBe(true)
  })

  it('gzips a big list at once when asked to (getNow), and get() serves that copy after', () => {
    const gz = new PeerListGzip(() => 0)
    const big = list('{"id":"y"},'.repeat(Math.ceil(GZIP_INLINE_MAX / 10)))
    const now = gz.getNow(big)
    expect(zlib.gunzipSync(now).equals(big.bytes)).toBe(true)
    expect(gz.get(big)).toBe(now)
    expect(gz.getNow(big)).toBe(now)
  })
})
