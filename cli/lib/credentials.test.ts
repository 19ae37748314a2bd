// Unit tests of the credentials file (mode, atomic replace) and of env-over-file precedence.
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {isMeshError} from '../../shared/errors.js'
import {
  type Credentials,
  credentialsPath,
  deleteCredentials,
  readCredentials,
  resolveSession,
  writeCredentials,
} from './credentials.js'

const stored: Credentials = {
  controller: 'http://127.0.0.1:9000',
  token: 'file-token',
  user: 'admin',
  tenant: 'default',
  expiresAt: '2026-12-22T00:00:00.000Z',
}

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn()
  } catch (err) {
    return isMeshError(err) ? err.code : 'NOT_A_MESH_ERROR'
  }
  return undefined
}

describe('resolveSession', () => {
  it('uses the file when the environment says nothing', () => {
    expect(resolveSession(stored, {})).toEqual({
      controller: stored.controller,
      token: 'file-token',
      user: 'admin',
      tenant: 'default',
      expiresAt: stored.expiresAt,
      source: {controller: 'file', token: 'file'},
    })
  })

  it('keeps using the saved token when MESH_CONTROLLER names the same controller', () => {
    const s = resolveSession(stored, {MESH_CONTROLLER: `${stored.controller}/`})
    expect(s.token).toBe('file-token')
    expect(s.source).toEqual({controller: 'env', token: 'file'})
  })

  it('never sends the saved token to another controller named by MESH_CONTROLLER alone', () => {
    let err: unknown
    try {
      resolveSession(stored, {MESH_CONTROLLER: 'http://10.0.0.1:8080'})
    } catch (e) {
      err = e
    }
    expect((err as {code?: string}).code).toBe('NOT_LOGGED_IN')
    expect((err as Error).message).toContain(`the saved login is for ${stored.controller}`)
  })

  it('lets MESH_TOKEN alone replace only the token, and forgets the file user', () => {
    const s = resolveSession(stored, {MESH_TOKEN: 'env-token'})
    expect(s.controller).toBe(stored.controller)
    expect(s.token).toBe('env-token')
    expect(s.user).toBeUndefined()
    expect(s.source).toEqual({controller: 'file', token: 'env'})
  })

  it('works from the environment alone, without a file', () => {
    const s = resolveSession(undefined, {MESH_CONTROLLER: 'http://c', MESH_TOKEN: 't'})
    expect(s).toMatchObject({controller: 'http://c', token: 't', source: {controller: 'env', token: 'env'}})
  })

  it('is NOT_LOGGED_IN when either part is missing everywhere', () => {
    expect(codeOf(() => resolveSession(undefined, {}))).toBe('NOT_LOGGED_IN')
    expect(codeOf(() => resolveSession(undefined, {MESH_TOKEN: 't'}))).toBe('NOT_LOGGED_IN')
    expect(codeOf(() => resolveSession(undefined, {MESH_CONTROLLER: 'http://c'}))).toBe('NOT_LOGGED_IN')
    expect(codeOf(() => resolveSession(undefined, {MESH_CONTROLLER: ' ', MESH_TOKEN: ''}))).toBe(
      'NOT_LOGGED_IN',
    )
  })
})

describe('credentials file', () => {
  let dir: string
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mesh-creds-'))
  })
  afterEach(async () => {
    await fs.rm(dir, {recursive: true, force: true})
  })

  it('is written with mode 0600 in a 0700 directory and reads back', async () => {
    const file = credentialsPath(path.join(dir, 'cfg', 'mesh'))
    await writeCredentials(stored, file)
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600)
    expect((await fs.stat(path.dirname(file))).mode & 0o777).toBe(0o700)
    expect(await readCredentials(file)).toEqual(stored)
  })

  it('replaces an existing file, narrows a loose one, and leaves no temporary files', async () => {
    const file = credentialsPath(dir)
    await fs.writeFile(file, '{}', {mode: 0o644})
    await writeCredentials({...stored, token: 'second'}, file)
    expect((await readCredentials(file))?.token).toBe('second')
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600)
    expect(await fs.readdir(dir)).toEqual(['credentials.json'])
  })

  it('reads a missing file as not logged in, and a damaged one as CONFIG_INVALID', async () => {
    const file = credentialsPath(dir)
    expect(await readCredentials(file)).toBeUndefined()
    await fs.writeFile(file, 'not json')
    await expect(readCredentials(file)).rejects.toMatchObject({code: 'CONFIG_INVALID'})
    await fs.writeFile(file, JSON.stringify({controller: 'x'}))
    await expect(readCredentials(file)).rejects.toMatchObject({code: 'CONFIG_INVALID'})
  })

  it('deletes idempotently', async () => {
    const file = credentialsPath(dir)
    await writeCredentials(stored, file)
    expect(await deleteCredentials(file)).toBe(true)
    expect(await deleteCredentials(file)).toBe(false)
  })
})
