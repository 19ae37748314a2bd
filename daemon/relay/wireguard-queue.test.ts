import {describe, expect, it} from 'vitest'
import {DATAGRAM_TRUESIZE, parseUdpRxQueue, wireGuardQueueTarget} from './wireguard-queue.js'

// Shaped like /proc/net/udp in a lab node's namespace: wireguard-go on 0.0.0.0:33238 (0x81D6)
// with 45 full-size packets waiting, a shim on 127.0.0.1:40609 (0x9EA1), and a connected socket
// whose REMOTE port is 33238 (it must not be taken for WireGuard's).
const UDP = [
  '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            ',
  ' 5556: 00000000:81D6 00000000:0000 07 00000000:00019500 00:00000000 00000000     0        0 7745354 2 00000000861e9002 1264    ',
  '12927: 0100007F:9EA1 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7745773 2 000000007a9465c3 0       ',
  '14138: 0200F00A:A35C 0100007F:81D6 01 00000000:00000A00 00:00000000 00000000     0        0 7745740 2 00000000bbd06f4d 0       ',
].join('\n')

const UDP6 = [
  '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops',
  ' 5556: 00000000000000000000000000000000:C350 00000000000000000000000000000000:0000 07 00000000:00001200 00:00000000 00000000     0        0 7745355 2 0000000000000000 0',
].join('\n')

describe('parseUdpRxQueue', () => {
  it.each([
    ['wireguard_on_the_wildcard_address', UDP, 33238, 45 * DATAGRAM_TRUESIZE],
    ['a_socket_on_loopback', UDP, 40609, 0],
    ['an_ipv6_socket', UDP6, 50000, 0x1200],
    ['no_socket_on_the_port', UDP, 51820, undefined],
    [
      'the_port_only_as_a_remote_one',
      UDP.split('\n').slice(0, 1).concat(UDP.split('\n')[3]!).join('\n'),
      33238,
      undefined,
    ],
    ['an_invalid_port', UDP, 0, undefined],
    ['an_empty_file', '', 33238, undefined],
  ])('%s', (_name, text, port, want) => {
    expect(parseUdpRxQueue(text, port)).toBe(want)
  })

  it('reads the last line when the file does not end with a newline', () => {
    expect(parseUdpRxQueue(UDP.split('\n').slice(0, 2).join('\n'), 33238)).toBe(45 * DATAGRAM_TRUESIZE)
  })
})

describe('wireGuardQueueTarget', () => {
  it('leaves room below the receive buffer and allows more than a handful of packets', () => {
    const target = wireGuardQueueTarget()
    expect(target).toBeGreaterThanOrEqual(16 * DATAGRAM_TRUESIZE)
  })
})
