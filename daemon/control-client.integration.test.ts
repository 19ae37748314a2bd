// meshd's REST calls against a hostile "controller" on loopback: a join string can name any
// server, so its replies are read up to a cap and anything unusable is CONTROLLER_BAD_REPLY.
import {afterEach, describe, expect, it} from 'vitest'
import {generateKeyPair} from './keys.js'
import {MAX_CONTROLLER_REPLY_BYTES} from '../shared/limits.js'
import {startHostileServer, type HostileServer} from '../test/hostile-server.js'
import {deregisterNode, registerNode} from './control-client.js'

/** The cap plus loopback socket buffers on both sides: far below what an uncapped read takes. */
const WRITTEN_BOUND = 8 * 1024 * 1024

let server: HostileServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

const register = (url: string) =>
  registerNode(url, {
    invite: 'i'.repeat(20),
    publicKey: generateKeyPair().publicKey,
    name: 'victim',
  })

describe('meshd control client against a hostile controller', () => {
  it('stops reading an endless register reply at the cap: CONTROLLER_BAD_REPLY, server wrote < 8 MiB', async () => {
    server = await startHostileServer({kind: 'endless'})
    const err = await register(server.url).catch((e: unknown) => e)
    expect(err).toMatchObject({
      code: 'CONTROLLER_BAD_REPLY',
      exit: 76,
      message: expect.stringContaining('larger than 1 MiB'),
    })
    await server.drained()
    expect(server.bytesWritten).toBeGreaterThan(MAX_CONTROLLER_REPLY_BYTES)
    expect(server.bytesWritten).toBeLessThan(WRITTEN_BOUND)
  })

  it('refuses a reply whose Content-Length is over the cap before reading it', async () => {
    server = await startHostileServer({kind: 'endless', contentLength: 2 * 1024 * 1024 * 1024})
    await expect(deregisterNode(server.url, 'cred')).rejects.toMatchObject({code: 'CONTROLLER_BAD_REPLY'})
    await server.drained()
    expect(server.bytesWritten).toBeLessThan(WRITTEN_BOUND)
  })

  it('reports a 200 reply that is not JSON as CONTROLLER_BAD_REPLY, not INTERNAL', async () => {
    server = await startHostileServer({
      kind: 'fixed',
      status: 200,
      body: '<html>welcome to the hotel wifi</html>',
      contentType: 'text/html',
    })
    await expect(register(server.url)).rejects.toMatchObject({
      code: 'CONTROLLER_BAD_REPLY',
      message: expect.stringContaining('not JSON'),
    })
  })

  it('reports a JSON reply outside the contract as CONTROLLER_BAD_REPLY', async () => {
    server = await startHostileServer({kind: 'fixed', status: 200, body: '{"node":{"id":1}}'})
    await expect(register(server.url)).rejects.toMatchObject({code: 'CONTROLLER_BAD_REPLY'})
  })
})
