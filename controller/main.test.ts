// Parsing of the controller's start options: --listen, --database and --public-url.
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {parseDatabase, parseListen, parsePublicUrl} from './main.js'

describe('controller start options', () => {
  it('parses HOST:PORT for --listen, IPv6 in brackets, and refuses the rest with CONFIG_INVALID', () => {
    expect(parseListen('127.0.0.1:0')).toEqual({host: '127.0.0.1', port: 0})
    expect(parseListen('[::1]:8080')).toEqual({host: '::1', port: 8080})
    expect(parseListen('localhost:443')).toEqual({host: 'localhost', port: 443})
    for (const bad of ['8080', '127.0.0.1', '127.0.0.1:70000', ':80', 'a b:1', '127.0.0.1:-1']) {
      expect(() => parseListen(bad), bad).toThrow(expect.objectContaining({code: 'CONFIG_INVALID'}))
    }
  })

  it('takes sqlite:PATH (relative to the working directory) and defaults to DATA_DIR/mesh.db', () => {
    expect(parseDatabase(undefined, '/data')).toBe('/data/mesh.db')
    expect(parseDatabase('sqlite:/srv/m.db', '/data')).toBe('/srv/m.db')
    expect(parseDatabase('sqlite:rel.db', '/data')).toBe(path.resolve('rel.db'))
    for (const bad of ['postgres://u:p@h/db', 'sqlite:', 'mesh.db']) {
      expect(() => parseDatabase(bad, '/data'), bad).toThrow(
        expect.objectContaining({code: 'DATABASE_UNSUPPORTED'}),
      )
    }
  })

  it('keeps the password of a database URL out of the error message', () => {
    expect(() => parseDatabase('postgres://user:secret@db/mesh', '/d')).toThrow(/^(?!.*secret)/)
  })

  it('accepts http(s) public URLs without a trailing slash and refuses others', () => {
    expect(parsePublicUrl(undefined)).toBeUndefined()
    expect(parsePublicUrl('https://mesh.example.com/')).toBe('https://mesh.example.com')
    expect(parsePublicUrl('http://198.51.100.1:8080')).toBe('http://198.51.100.1:8080')
    for (const bad of ['mesh.example.com', 'ftp://x', 'https://x/?a=1', 'https://u:p@x']) {
      expect(() => parsePublicUrl(bad), bad).toThrow(expect.objectContaining({code: 'CONFIG_INVALID'}))
    }
  })
})
