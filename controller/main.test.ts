// Parsing of the controller's start options: --listen, --database, --public-url and the NAT
// services' UDP addresses.
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {parseDatabase, parseListen, parsePublicUrl, parseTrustedProxies, parseUdpService} from './main.js'
import {describeDatabase} from './store/database.js'

describe('controller start options', () => {
  it('parses HOST:PORT for --listen, IPv6 in brackets, and refuses the rest with CONFIG_INVALID', () => {
    expect(parseListen('127.0.0.1:0')).toEqual({host: '127.0.0.1', port: 0})
    expect(parseListen('[::1]:8080')).toEqual({host: '::1', port: 8080})
    expect(parseListen('localhost:443')).toEqual({host: 'localhost', port: 443})
    for (const bad of ['8080', '127.0.0.1', '127.0.0.1:70000', ':80', 'a b:1', '127.0.0.1:-1']) {
      expect(() => parseListen(bad), bad).toThrow(expect.objectContaining({code: 'CONFIG_INVALID'}))
    }
  })

  it('takes sqlite:PATH (relative to the working directory), postgres:// URLs, and defaults to DATA_DIR/mesh.db', () => {
    expect(parseDatabase(undefined, '/data')).toEqual({kind: 'sqlite', path: '/data/mesh.db'})
    expect(parseDatabase('sqlite:/srv/m.db', '/data')).toEqual({kind: 'sqlite', path: '/srv/m.db'})
    expect(parseDatabase('sqlite:rel.db', '/data')).toEqual({kind: 'sqlite', path: path.resolve('rel.db')})
    for (const url of ['postgres://u:p@h/db', 'postgresql://mesh@db.example.com:5433/mesh?sslmode=require']) {
      expect(parseDatabase(url, '/data')).toEqual({kind: 'postgres', url})
    }
    for (const bad of ['postgres://', 'mysql://u:p@h/db', 'sqlite:', 'mesh.db']) {
      expect(() => parseDatabase(bad, '/data'), bad).toThrow(
        expect.objectContaining({code: 'DATABASE_UNSUPPORTED'}),
      )
    }
  })

  it('keeps the password of a database URL out of the error message', () => {
    expect(() => parseDatabase('mysql://user:secret@db/mesh', '/d')).toThrow(/^(?!.*secret)/)
    expect(describeDatabase(parseDatabase('postgres://user:secret@db/mesh', '/d'))).toBe(
      'postgres://user:***@db/mesh',
    )
  })

  it('accepts http(s) public URLs without a trailing slash and refuses others', () => {
    expect(parsePublicUrl(undefined)).toBeUndefined()
    expect(parsePublicUrl('https://mesh.example.com/')).toBe('https://mesh.example.com')
    expect(parsePublicUrl('http://198.51.100.1:8080')).toBe('http://198.51.100.1:8080')
    for (const bad of ['mesh.example.com', 'ftp://x', 'https://x/?a=1', 'https://u:p@x']) {
      expect(() => parsePublicUrl(bad), bad).toThrow(expect.objectContaining({code: 'CONFIG_INVALID'}))
    }
  })

  it('defaults STUN and discovery to the --listen host on their ports (free ports when --listen is :0); off disables', () => {
    const listen = {host: '198.51.100.1', port: 8080}
    expect(parseUdpService(undefined, '--stun-listen', listen, 3478)).toEqual({
      host: '198.51.100.1',
      port: 3478,
    })
    expect(parseUdpService(undefined, '--stun-listen', {host: '127.0.0.1', port: 0}, 3478)).toEqual({
      host: '127.0.0.1',
      port: 0,
    })
    expect(parseUdpService(undefined, '--discovery-listen', {host: 'localhost', port: 8080}, 51820)).toEqual({
      host: '127.0.0.1',
      port: 51820,
    })
    expect(parseUdpService('[::]:3478', '--stun-listen', listen, 3478)).toEqual({host: '::', port: 3478})
    expect(parseUdpService('off', '--stun-listen', listen, 3478)).toBeUndefined()
    for (const bad of ['stun.example.com:3478', '3478', '1.2.3.4:99999']) {
      expect(() => parseUdpService(bad, '--stun-listen', listen, 3478), bad).toThrow(
        expect.objectContaining({code: 'CONFIG_INVALID'}),
      )
    }
    // A --listen host name that is not localhost cannot default a UDP bind: say which flag to give.
    expect(() => parseUdpService(undefined, '--stun-listen', {host: 'ctl.example', port: 80}, 3478)).toThrow(
      expect.objectContaining({code: 'CONFIG_INVALID', message: expect.stringContaining('--stun-listen')}),
    )
  })

  it('takes --trusted-proxy as addresses or CIDRs of load balancers, and refuses catch-alls and junk', () => {
    expect(parseTrustedProxies(undefined)).toEqual([])
    expect(parseTrustedProxies('10.0.0.5, 10.1.0.0/24,fd00::1,fd00::/64')).toEqual([
      '10.0.0.5',
      '10.1.0.0/24',
      'fd00::1',
      'fd00::/64',
    ])
    for (const bad of ['0.0.0.0/0', '::/0', 'lb.example.com', '10.0.0.0/33', '10.0.0.1/8/1', '10.0.0.1/x']) {
      expect(() => parseTrustedProxies(bad), bad).toThrow(expect.objectContaining({code: 'CONFIG_INVALID'}))
    }
  })
})
