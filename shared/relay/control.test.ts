import {describe, expect, it} from 'vitest'
import {decodeMeshPacket, encodeMeshPacket} from './control.js'

const opts = {maxPayload: 2048, maxPackets: 256}

describe('mesh packets', () => {
  it('carry the network, source, destination and packets in order', () => {
    const payloads = [Buffer.from('one'), Buffer.alloc(2048, 7), Buffer.from('three')]
    const p = decodeMeshPacket(
      encodeMeshPacket({networkId: 'net_1', src: 'nd_a', dst: 'nd_b', payloads}),
      opts,
    )
    expect([p.networkId, p.src, p.dst]).toEqual(['net_1', 'nd_a', 'nd_b'])
    expect(p.payloads.map((x) => x.toString('hex'))).toEqual(payloads.map((x) => x.toString('hex')))
  })

  it('are refused whole when an id, an entry or the end is malformed', () => {
    const good = encodeMeshPacket({networkId: 'n', src: 'a', dst: 'b', payloads: [Buffer.from('x')]})
    expect(() => decodeMeshPacket(good.subarray(0, good.length - 1), opts)).toThrow()
    expect(() => decodeMeshPacket(Buffer.concat([good, Buffer.from([0])]), opts)).toThrow()
    expect(() => decodeMeshPacket(Buffer.from([1, 0x20, 1, 0x61, 1, 0x62, 0, 1, 0x78]), opts)).toThrow()
    expect(() => decodeMeshPacket(good.subarray(0, 6), opts)).toThrow()
    const big = encodeMeshPacket({networkId: 'n', src: 'a', dst: 'b', payloads: [Buffer.alloc(2049)]})
    expect(() => decodeMeshPacket(big, opts)).toThrow()
    const many = encodeMeshPacket({
      networkId: 'n',
      src: 'a',
      dst: 'b',
      payloads: [Buffer.from('x'), Buffer.from('y')],
    })
    expect(() => decodeMeshPacket(many, {...opts, maxPackets: 1})).toThrow()
  })
})
