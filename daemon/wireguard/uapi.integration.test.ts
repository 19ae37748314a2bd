// The UAPI client against a stand-in wireguard-go on a real unix socket in a temp dir: replies
// that arrive in pieces, no socket at all, and the hostile ones (too big, never ending, trailing
// bytes, cut short). Time is a FakeClock: the 5 s timeout fires when the test moves it.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {afterAll, afterEach, describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {UapiClient} from './uapi.js'

const key = (n: number): string => Buffer.alloc(32, n).toString('base64')
const hex = (b64: string): string => Buffer.from(b64, 'base64').toString('hex')

describe('UapiClient', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-uapi-'))
  const servers: net.Server[] = []
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))))
  })
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  /**
   * Serves IFNAME.sock: `answer` gets each request once it is complete (its blank line came, or
   * the client half-closed) and the socket to answer on. Resolves with what was received.
   */
  async function serve(name: string, answer: (request: string, sock: net.Socket) => void): Promise<string[]> {
    const received: string[] = []
    const server = net.createServer((sock) => {
      let buf = ''
      let answered = false
      const done = (): void => {
        if (answered) return
        answered = true
        received.push(buf)
        answer(buf, sock)
      }
      sock.on('data', (c) => {
        buf += c.toString('utf8')
        if (buf.endsWith('\n\n')) done()
      })
      sock.on('end', done)
      sock.on('error', () => {})
    })
    servers.push(server)
    await new Promise<void>((r) => server.listen(path.join(dir, `${name}.sock`), r))
    return received
  }

  const getReply = [
    `private_key=${hex(key(1))}`,
    'listen_port=51820',
    `public_key=${hex(key(3))}`,
    'endpoint=198.51.100.3:41870',
    'rx_bytes=10',
    'allowed_ip=10.99.0.2/32',
    'errno=0',
    '',
    '',
  ].join('\n')

  it('reads a reply that arrives one byte at a time', async () => {
    await serve('bytewise0', (_req, sock) => {
      const bytes = [...Buffer.from(getReply)]
      const next = (): void => {
        const b = bytes.shift()
        if (b !== undefined) sock.write(Buffer.of(b), next)
      }
      next()
    })
    const st = await new UapiClient({dir}).get('bytewise0')
    expect(st?.listenPort).toBe(51820)
    expect(st?.peers).toEqual([
      {
        publicKey: key(3),
        endpoint: '198.51.100.3:41870',
        allowedIps: ['10.99.0.2/32'],
        lastHandshakeMs: 0,
        rxBytes: 10,
        txBytes: 0,
      },
    ])
  })

  it('reads no interface where no wireguard-go has a socket', async () => {
    const client = new UapiClient({dir})
    expect(await client.get('absent0')).toBeUndefined()
    await expect(client.set('absent0', {listenPort: 1})).rejects.toMatchObject({code: 'WIREGUARD_FAILED'})
  })

  it('sends a set transaction and fails it, naming the peer, when the reply has an errno', async () => {
    const received = await serve('refuse0', (_req, sock) => sock.end('errno=-22\n\n'))
    const client = new UapiClient({dir})
    const err = await client
      .set('refuse0', {peers: [{publicKey: key(4), endpoint: '203.0.113.4:1'}]})
      .catch((e) => e)
    expect(err).toMatchObject({code: 'WIREGUARD_FAILED'})
    expect(String(err.message)).toContain(key(4))
    expect(String(err.message)).toContain('errno -22')
    expect(received).toEqual([`set=1\npublic_key=${hex(key(4))}\nendpoint=203.0.113.4:1\n\n`])
  })

  it('takes a set that wireguard-go accepts', async () => {
    await serve('accept0', (_req, sock) => sock.end('errno=0\n\n'))
    await new UapiClient({dir}).set('accept0', {peers: [{publicKey: key(4), remove: true}]})
  })

  it('gives up on a reply bigger than its cap', async () => {
    await serve('huge0', (_req, sock) => sock.write(`${'rx_bytes=1\n'.repeat(200)}errno=0\n\n`))
    await expect(new UapiClient({dir, maxReplyBytes: 1024}).get('huge0')).rejects.toThrow(/larger than 1024/)
  })

  it('gives up on a wireguard-go that never finishes its reply', async () => {
    let answered!: () => void
    const asked = new Promise<void>((r) => (answered = r))
    await serve('hang0', (_req, sock) => {
      sock.write('listen_port=1\n')
      answered()
    })
    const clock = new FakeClock()
    const reading = new UapiClient({dir, clock}).get('hang0').catch((e: unknown) => e)
    await asked
    await clock.advanceAsync(5_000)
    expect(await reading).toMatchObject({code: 'WIREGUARD_FAILED', message: expect.stringMatching(/5000 ms/)})
  })

  it('refuses bytes after the end of a reply', async () => {
    await serve('trail0', (_req, sock) => sock.end('errno=0\n\nerrno=0\n\n'))
    await expect(new UapiClient({dir}).get('trail0')).rejects.toThrow(/after the end/)
  })

  it('fails a reply cut short by a closed connection', async () => {
    await serve('cut0', (_req, sock) => sock.end('listen_port=1\n'))
    await expect(new UapiClient({dir}).get('cut0')).rejects.toThrow(/closed before the reply ended/)
  })

  it('refuses an interface name that could leave the socket directory', async () => {
    await expect(new UapiClient({dir}).get('../etc')).rejects.toMatchObject({code: 'WIREGUARD_FAILED'})
  })
})
