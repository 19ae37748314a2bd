// The OIDC config file: what it accepts, what it refuses, and how groups map to a tenant role.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {isMeshError} from '../../shared/errors.js'
import {loadOidcConfig, mappedRole, parseOidcConfig} from './oidc-config.js'
import {groupsOf, usernameCandidates} from './oidc.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-oidc-cfg-'))
afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

const write = (name: string, text: string, mode: number) => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, text)
  fs.chmodSync(file, mode)
  return file
}
const failure = async (p: Promise<unknown>) => {
  try {
    await p
  } catch (err) {
    if (isMeshError(err)) return `${err.code}: ${err.message}`
    throw err
  }
  throw new Error('resolved')
}

const YAML = `issuers:
  - name: corp
    issuer: https://sso.example.com/realms/corp
    clientId: mesh
    roles: {mesh-admins: admin, mesh-owners: owner}
`

describe('OIDC config', () => {
  it('reads a YAML file with defaults filled in', async () => {
    const cfg = await loadOidcConfig(write('ok.yaml', YAML, 0o644))
    expect(cfg.issuers[0]).toMatchObject({
      name: 'corp',
      scopes: ['openid', 'profile', 'email'],
      groupsClaim: 'groups',
      tenant: 'default',
      defaultRole: 'member',
      allowHttp: false,
    })
  })

  it('refuses a client secret that group or others may read, and a file they may write', async () => {
    const secret = `${YAML}    clientSecret: s3cret\n`
    expect(await failure(loadOidcConfig(write('secret.yaml', secret, 0o644)))).toMatch(
      /^CONFIG_INVALID: .*holds a client secret and group or others may read it/,
    )
    await expect(loadOidcConfig(write('secret-ok.yaml', secret, 0o600))).resolves.toBeDefined()
    expect(await failure(loadOidcConfig(write('w.yaml', YAML, 0o666)))).toMatch(/writable by group or others/)
  })

  it('refuses plain http issuers unless allowHttp, unknown keys, and duplicate names', () => {
    const one = {name: 'a', issuer: 'http://127.0.0.1:9', clientId: 'x'}
    expect(() => parseOidcConfig({issuers: [one]}, 'f')).toThrow(/allowHttp/)
    expect(parseOidcConfig({issuers: [{...one, allowHttp: true}]}, 'f').issuers).toHaveLength(1)
    expect(() => parseOidcConfig({issuers: [{...one, allowHttp: true, clientid: 'typo'}]}, 'f')).toThrow(
      /clientid/,
    )
    expect(() =>
      parseOidcConfig(
        {
          issuers: [
            {...one, allowHttp: true},
            {...one, allowHttp: true},
          ],
        },
        'f',
      ),
    ).toThrow(/names must differ/)
  })

  it('maps groups to the highest configured role, the default when none matches, nothing without roles', () => {
    const cfg = parseOidcConfig(
      {
        issuers: [
          {
            name: 'a',
            issuer: 'https://x',
            clientId: 'x',
            roles: {adm: 'admin', own: 'owner'},
            defaultRole: 'guest',
          },
        ],
      },
      'f',
    ).issuers[0]!
    expect(mappedRole(cfg, ['adm', 'own', 'x'])).toBe('owner')
    expect(mappedRole(cfg, ['adm'])).toBe('admin')
    expect(mappedRole(cfg, ['x'])).toBe('guest')
    expect(mappedRole({...cfg, roles: undefined}, ['adm'])).toBeUndefined()
  })

  it('keeps group claims that are short printable strings, and makes user names from claims', () => {
    expect(groupsOf(['a', 'a', 7, '', 'b\u202e', 'x'.repeat(201), 'ok'])).toEqual(['a', 'ok'])
    expect(groupsOf('solo')).toEqual(['solo'])
    expect(groupsOf(undefined)).toEqual([])
    const names = usernameCandidates('Ann Lee', 'ann.lee@example.test', 'sub')
    expect(names.slice(0, 2)).toEqual(['ann-lee', 'ann.lee'])
    expect(names[2]).toMatch(/^oidc-[0-9a-f]{10}$/)
    expect(usernameCandidates('---', undefined, 'sub')[0]).toMatch(/^oidc-/)
  })
})
