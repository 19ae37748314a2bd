import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {generateKeyPair, publicKeyOf} from '../keys.js'
import {parseGet, replyLines, serialiseSet} from './uapi.js'

const key = (n: number): string => Buffer.alloc(32, n).toString('base64')
const hex = (b64: string): string => Buffer.from(b64, 'base64').toString('hex')

/** A get reply as wireguard-go writes it, up to (not including) the closing blank line. */
const reply = (...lines: string[]): string => [...lines, 'errno=0'].join('\n')

describe('parseGet', () => {
  const me = generateKeyPair()

  it('reads keys, port and every peer as `wg show dump` would give them', () => {
    const text = reply(
      `private_key=${hex(me.privateKey)}`,
      'listen_port=51820',
      'fwmark=0',
      `public_key=${hex(key(3))}`,
      `preshared_key=${'0'.repeat(64)}`,
      'protocol_version=1',
      'endpoint=198.51.100.3:41870',
      'last_handshake_time_sec=1795319700',
      'last_handshake_time_nsec=250000000',
      'tx_bytes=5678',
      'rx_bytes=1234',
      'persistent_keepalive_interval=25',
      'allowed_ip=10.99.0.2/32',
      `public_key=${hex(key(4))}`,
      'protocol_version=1',
      'last_handshake_time_sec=0',
      'last_handshake_time_nsec=0',
      'tx_bytes=0',
      'rx_bytes=0',
      'persistent_keepalive_interval=0',
      'allowed_ip=10.99.0.3/32',
      'allowed_ip=10.5.0.0/16',
      `public_key=${hex(key(5))}`,
      'endpoint=[2001:db8::7]:51820',
      'a_key_from_a_newer_wireguard_go=whatever it says',
      'persistent_keepalive_interval=1',
      'allowed_ip=fd00:77::5/128',
    )
    expect(parseGet(text)).toEqual({
      privateKey: me.privateKey,
      publicKey: me.publicKey,
      listenPort: 51820,
      peers: [
        {
          publicKey: key(3),
          endpoint: '198.51.100.3:41870',
          allowedIps: ['10.99.0.2/32'],
          lastHandshakeMs: 1795319700250,
          rxBytes: 1234,
          txBytes: 5678,
          persistentKeepalive: 25,
        },
        {
          publicKey: key(4),
          allowedIps: ['10.99.0.3/32', '10.5.0.0/16'],
          lastHandshakeMs: 0,
          rxBytes: 0,
          txBytes: 0,
        },
        {
          publicKey: key(5),
          endpoint: '[2001:db8::7]:51820',
          allowedIps: ['fd00:77::5/128'],
          lastHandshakeMs: 0,
          rxBytes: 0,
          txBytes: 0,
          persistentKeepalive: 1,
        },
      ],
    })
  })

  it('derives the public key from the private one as `wg pubkey` does', () => {
    const kp = generateKeyPair()
    expect(parseGet(reply(`private_key=${hex(kp.privateKey)}`)).publicKey).toBe(publicKeyOf(kp.privateKey))
  })

  it('reads an interface with no key, no port and no peers as empty', () => {
    expect(parseGet(reply())).toEqual({privateKey: '', publicKey: '', listenPort: 0, peers: []})
  })

  it('keeps an IPv6 endpoint with a zone as wireguard-go printed it', () => {
    const st = parseGet(reply(`public_key=${hex(key(3))}`, 'endpoint=[fe80::1%eth0]:51820'))
    expect(st.peers[0]?.endpoint).toBe('[fe80::1%eth0]:51820')
  })

  it('fails a reply whose errno is not 0, naming the errno', () => {
    expect(() => parseGet('errno=-22')).toThrow(expect.objectContaining({code: 'WIREGUARD_FAILED'}))
    expect(() => parseGet('errno=-22')).toThrow(/errno -22 \(EINVAL/)
  })

  it.each([
    ['no_errno_line', 'listen_port=1'],
    ['errno_not_last', 'errno=0\nlisten_port=1'],
    ['line_without_equals', reply('listen_port')],
    ['empty_key', reply('=1')],
    ['upper_case_key', reply('LISTEN_PORT=1')],
    ['port_too_big', reply('listen_port=65536')],
    ['port_with_sign', reply('listen_port=+1')],
    ['port_leading_zero', reply('listen_port=01')],
    ['short_private_key', reply(`private_key=${'a'.repeat(62)}`)],
    ['private_key_not_hex', reply(`private_key=${'g'.repeat(64)}`)],
    ['private_key_twice', reply(`private_key=${'a'.repeat(64)}`, `private_key=${'b'.repeat(64)}`)],
    ['peer_line_before_any_peer', reply('endpoint=198.51.100.3:1')],
    ['bad_public_key', reply('public_key=xyz')],
    ['peer_listed_twice', reply(`public_key=${hex(key(3))}`, `public_key=${hex(key(3))}`)],
    ['endpoint_hostname', reply(`public_key=${hex(key(3))}`, 'endpoint=example.com:1')],
    ['endpoint_bad_octet', reply(`public_key=${hex(key(3))}`, 'endpoint=999.999.999.999:1')],
    ['endpoint_v6_unbracketed', reply(`public_key=${hex(key(3))}`, 'endpoint=2001:db8::1:1')],
    ['endpoint_port_too_big', reply(`public_key=${hex(key(3))}`, 'endpoint=198.51.100.3:70000')],
    [
      'endpoint_twice',
      reply(`public_key=${hex(key(3))}`, 'endpoint=198.51.100.3:1', 'endpoint=198.51.100.4:1'),
    ],
    ['allowed_ip_without_prefix', reply(`public_key=${hex(key(3))}`, 'allowed_ip=10.0.0.1')],
    ['allowed_ip_prefix_too_long', reply(`public_key=${hex(key(3))}`, 'allowed_ip=10.0.0.1/33')],
    ['allowed_ip_v6_prefix_too_long', reply(`public_key=${hex(key(3))}`, 'allowed_ip=fd00::1/129')],
    ['counter_not_a_number', reply(`public_key=${hex(key(3))}`, 'rx_bytes=12e3')],
    ['counter_too_long', reply(`public_key=${hex(key(3))}`, `rx_bytes=${'9'.repeat(25)}`)],
    ['nanoseconds_past_a_second', reply(`public_key=${hex(key(3))}`, 'last_handshake_time_nsec=1000000000')],
    ['keepalive_too_big', reply(`public_key=${hex(key(3))}`, 'persistent_keepalive_interval=65536')],
    ['carriage_return', reply('listen_port=1\r')],
  ])('refuses a malformed reply: %s', (_name, text) => {
    expect(() => parseGet(text)).toThrow(expect.objectContaining({code: 'WIREGUARD_FAILED'}))
  })

  it('never fails with anything but WIREGUARD_FAILED, whatever the bytes', () => {
    const good = reply(
      `private_key=${hex(me.privateKey)}`,
      'listen_port=51820',
      `public_key=${hex(key(3))}`,
      'endpoint=[2001:db8::7]:51820',
      'allowed_ip=10.99.0.2/32',
      'rx_bytes=1',
    )
    const alphabet = '=\n:[]%/.-0123456789abcdefx_ '
    for (let i = 0; i < 2000; i++) {
      const chars = [...good]
      const r = randomBytes(8)
      for (let j = 0; j < 1 + (r[0]! % 4); j++) {
        const at = r.readUInt16LE(1 + j) % chars.length
        chars[at] = alphabet[r[5]! % alphabet.length]!
        if (r[6]! % 5 === 0) chars.splice(at, 1)
      }
      try {
        // A stub derivation: tweetnacl's X25519 would cost ≈ 0.5 ms a round.
        parseGet(chars.join(''), () => 'derived')
      } catch (err) {
        expect((err as {code?: string}).code).toBe('WIREGUARD_FAILED')
      }
    }
  })
})

describe('replyLines', () => {
  it('gives the lines before a zero errno and fails on any other errno', () => {
    expect(replyLines('errno=0', 'set')).toEqual([])
    expect(() => replyLines('errno=-98', 'set on mesh0')).toThrow(
      /set on mesh0 failed: errno -98 \(EADDRINUSE/,
    )
    expect(() => replyLines('', 'set')).toThrow(/no errno line/)
  })
})

describe('serialiseSet', () => {
  it('writes the device settings, then each peer, ending with the blank line', () => {
    const kp = generateKeyPair()
    const text = serialiseSet({
      privateKey: kp.privateKey,
      listenPort: 51820,
      peers: [
        {
          publicKey: key(3),
          endpoint: '203.0.113.3:51820',
          persistentKeepalive: 25,
          allowedIps: ['10.99.0.3/32'],
        },
        {publicKey: key(4), allowedIps: ['10.99.0.4/32', '10.5.0.0/16']},
        {publicKey: key(5), remove: true},
      ],
    })
    expect(text).toBe(
      [
        'set=1',
        `private_key=${hex(kp.privateKey)}`,
        'listen_port=51820',
        `public_key=${hex(key(3))}`,
        'endpoint=203.0.113.3:51820',
        'persistent_keepalive_interval=25',
        'replace_allowed_ips=true',
        'allowed_ip=10.99.0.3/32',
        `public_key=${hex(key(4))}`,
        'replace_allowed_ips=true',
        'allowed_ip=10.99.0.4/32',
        'allowed_ip=10.5.0.0/16',
        `public_key=${hex(key(5))}`,
        'remove=true',
        '',
        '',
      ].join('\n'),
    )
  })

  it('writes an IPv6 endpoint in brackets, in canonical form', () => {
    expect(serialiseSet({peers: [{publicKey: key(3), endpoint: '[2001:DB8:0::7]:1'}]})).toContain(
      'endpoint=[2001:db8::7]:1\n',
    )
  })

  it('changes only the fields given: a peer with no endpoint keeps the one WireGuard has', () => {
    expect(serialiseSet({peers: [{publicKey: key(3), persistentKeepalive: 0}]})).toBe(
      `set=1\npublic_key=${hex(key(3))}\npersistent_keepalive_interval=0\n\n`,
    )
  })

  it("clears a peer's allowed IPs with replace_allowed_ips and no allowed_ip", () => {
    expect(serialiseSet({peers: [{publicKey: key(3), allowedIps: []}]})).toBe(
      `set=1\npublic_key=${hex(key(3))}\nreplace_allowed_ips=true\n\n`,
    )
  })

  it('refuses what wireguard-go would refuse halfway through, before anything is sent', () => {
    const bad = (peer: object) => () =>
      serialiseSet({peers: [{publicKey: key(3)}, {publicKey: key(4), ...peer}]})
    expect(bad({endpoint: '999.999.999.999:1'})).toThrow(/invalid endpoint "999\.999\.999\.999:1"/)
    expect(bad({endpoint: 'example.com:1'})).toThrow(expect.objectContaining({code: 'WIREGUARD_FAILED'}))
    expect(bad({allowedIps: ['10.0.0.1']})).toThrow(/invalid allowed IP/)
    expect(bad({persistentKeepalive: 70000})).toThrow(/keepalive/)
    expect(() => serialiseSet({peers: [{publicKey: 'not-a-key'}]})).toThrow(/invalid public key/)
    expect(() => serialiseSet({listenPort: -1})).toThrow(/listen port/)
  })

  it('never puts a private key into an error message', () => {
    // One character short: a private key that is not 32 bytes of base64.
    const secret = generateKeyPair().privateKey.slice(1)
    let message = ''
    try {
      serialiseSet({privateKey: secret})
    } catch (err) {
      message = (err as Error).message
    }
    expect(message).toBe('invalid private key')
  })
})
