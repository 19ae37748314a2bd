import {describe, expect, it} from 'vitest'
import {generateKeyPair} from '../keys.js'
import {parsePeer, parseServerFrame, type PeerDrop} from './parse.js'

const ZERO_KEY = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='
const ORDER8_KEY = '4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA='
const peer = (id: string, over: Record<string, unknown> = {}) => ({
  id,
  name: id,
  publicKey: generateKeyPair().publicKey,
  address: '10.9.0.3',
  endpoints: ['198.51.100.7:51820'],
  hostname: id,
  os: 'linux',
  tags: [],
  ...over,
})
const full = (peers: unknown[]) => ({
  type: 'full',
  version: 1,
  network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
  self: {
    id: 'n1',
    name: 'alpha',
    publicKey: generateKeyPair().publicKey,
    address: '10.9.0.2',
    status: 'active',
  },
  peers,
})

describe('parseServerFrame', () => {
  it('drops an invalid peer of a full map and keeps every other one', () => {
    const drops: PeerDrop[] = []
    const {frame} = parseServerFrame(
      full([
        peer('good'),
        peer('zero-key', {publicKey: ZERO_KEY}),
        peer('order8-key', {publicKey: ORDER8_KEY}),
        peer('not-a-key', {publicKey: 'hello'}),
        peer('no-name', {name: 'NOT VALID'}),
        {id: 'bare'},
        'a string',
        null,
        peer('also-good'),
      ]),
      (d) => drops.push(d),
    )
    expect(frame?.type).toBe('full')
    expect(frame?.type === 'full' && frame.peers.map((p) => p.id)).toEqual(['good', 'also-good'])
    expect(drops.map((d) => [d.peer, d.what])).toEqual([
      ['zero-key', 'peer'],
      ['order8-key', 'peer'],
      ['not-a-key', 'peer'],
      ['no-name', 'peer'],
      ['bare', 'peer'],
      [null, 'peer'],
      [null, 'peer'],
    ])
    expect(drops[0]?.why).toMatch(/^publicKey: a low-order X25519 key/)
  })

  it('keeps a peer whose endpoints are bad, with only its usable endpoints, canonical', () => {
    const drops: PeerDrop[] = []
    const {frame} = parseServerFrame(
      full([
        peer('mixed', {
          endpoints: [
            '999.999.999.999:1',
            '[:::::]:1',
            '198.51.100.5:51820',
            '1.2.3.4:65536',
            '[2001:DB8::5]:7',
          ],
        }),
        peer('none-left', {endpoints: ['1.2.3.4:65536', 'host.example:1', '127.0.0.1:5']}),
        peer('not-a-list', {endpoints: '198.51.100.5:51820'}),
        peer('many', {endpoints: Array.from({length: 40}, (_, i) => `198.51.100.${i + 1}:1`)}),
      ]),
      (d) => drops.push(d),
    )
    if (frame?.type !== 'full') throw new Error('expected a full map')
    expect(frame.peers.map((p) => [p.id, p.endpoints.length])).toEqual([
      ['mixed', 2],
      ['none-left', 0],
      ['not-a-list', 0],
      ['many', 16],
    ])
    expect(frame.peers[0]?.endpoints).toEqual(['198.51.100.5:51820', '[2001:db8::5]:7'])
    expect(drops.every((d) => d.what === 'endpoints')).toBe(true)
    expect(drops.map((d) => d.peer)).toEqual(['mixed', 'none-left', 'not-a-list', 'many'])
  })

  it('turns a delta entry that became invalid into a removal, and ignores removed ids that are not ids', () => {
    const {frame} = parseServerFrame({
      type: 'delta',
      version: 2,
      added: [peer('new'), peer('new-bad', {publicKey: ZERO_KEY})],
      changed: [
        peer('now-zero-key', {publicKey: ZERO_KEY}),
        peer('moved', {endpoints: ['999.999.999.999:1']}),
      ],
      removed: ['gone', 5, null, 'x'.repeat(101)],
    })
    expect(frame).toEqual({
      type: 'delta',
      version: 2,
      added: [expect.objectContaining({id: 'new'})],
      changed: [expect.objectContaining({id: 'moved', endpoints: []})],
      removed: ['gone', 'new-bad', 'now-zero-key'],
    })
  })

  it('keeps the NAT services a delta carries (stand-alone relays came or went)', () => {
    const nat = {relays: [{region: 'default'}, {url: 'https://relay-eu.example', region: 'eu'}]}
    const r = parseServerFrame({type: 'delta', version: 4, nat})
    expect(r.frame).toEqual({type: 'delta', version: 4, nat})
  })

  it('ignores a frame whose envelope is invalid', () => {
    expect(parseServerFrame({type: 'full', version: -1, peers: []}).frame).toBeNull()
    expect(parseServerFrame({...full([]), self: {id: 'n1'}}).frame).toBeNull()
    expect(parseServerFrame({type: 'delta', version: 1, added: 'no'}).frame).toBeNull()
    expect(parseServerFrame('full').frame).toBeNull()
    expect(parseServerFrame({type: 'revoked', reason: 'bye'}).frame).toEqual({type: 'revoked', reason: 'bye'})
  })

  it('parses a valid peer unchanged', () => {
    const p = peer('ok')
    expect(parsePeer(p)).toEqual(p)
  })
})

describe('inbound rules in peer entries', () => {
  it("carries a peer's inbound rules through, and drops a peer whose rules are not valid (fail closed)", () => {
    const drops: PeerDrop[] = []
    const rules = [{proto: 'tcp', ports: [[22, 22]]}, {proto: 'icmp'}]
    const {frame} = parseServerFrame(
      full([
        peer('open'),
        peer('ruled', {inbound: rules}),
        peer('replies-only', {inbound: []}),
        peer('bad-proto', {inbound: [{proto: 'sctp'}]}),
        peer('bad-port', {inbound: [{proto: 'tcp', ports: [[0, 22]]}]}),
        peer('reversed', {inbound: [{proto: 'udp', ports: [[30, 20]]}]}),
        peer('too-many', {inbound: Array.from({length: 65}, () => ({proto: 'icmp'}))}),
      ]),
      (d) => drops.push(d),
    )
    const peers = frame?.type === 'full' ? frame.peers : []
    expect(peers.map((p) => [p.id, p.inbound])).toEqual([
      ['open', undefined],
      ['ruled', rules],
      ['replies-only', []],
    ])
    expect(drops.map((d) => d.peer)).toEqual(['bad-proto', 'bad-port', 'reversed', 'too-many'])
  })
})
