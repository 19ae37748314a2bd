// launchd property lists, checked by content: parsed back (plutil is macOS-only) and compared
// key by key with what launchd.plist(5) needs for the behaviour the systemd units have.
import {describe, expect, it} from 'vitest'
import {controllerPlist, daemonPlist} from './launchd.js'

type Plist = string | number | boolean | Plist[] | {[k: string]: Plist}

/** A small parser for the plist subset we write (dict, array, key, string, integer, true, false). */
function parsePlist(text: string): Plist {
  const header =
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n'
  expect(text.startsWith(header)).toBe(true)
  expect(text.endsWith('</plist>\n')).toBe(true)
  const tokens = [...text.slice(header.length, -'</plist>\n'.length).matchAll(/<(\/?)(\w+)(\/?)>([^<]*)/g)]
  let i = 0
  const unescape = (s: string): string =>
    s.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&amp;', '&')
  const value = (): Plist => {
    const [, close, tag, selfClose, body] = tokens[i++]!
    expect(close).toBe('')
    if (selfClose) {
      expect(['true', 'false']).toContain(tag)
      return tag === 'true'
    }
    const end = (): void => {
      const [, c, t] = tokens[i++]!
      expect([c, t]).toEqual(['/', tag])
    }
    if (tag === 'string' || tag === 'integer') {
      end()
      return tag === 'string' ? unescape(body!) : Number(body)
    }
    if (tag === 'array') {
      const out: Plist[] = []
      while (tokens[i]![1] !== '/') out.push(value())
      end()
      return out
    }
    expect(tag).toBe('dict')
    const out: Record<string, Plist> = {}
    while (tokens[i]![1] !== '/') {
      const [, , k, , key] = tokens[i++]!
      expect(k).toBe('key')
      i++ // </key>
      out[unescape(key!)] = value()
    }
    end()
    return out
  }
  const root = value()
  expect(i).toBe(tokens.length)
  return root
}

const ENTRY = ['/usr/local/bin/node', '/usr/local/lib/mesh/bin/mesh.js']

describe('the meshd plist', () => {
  const p = parsePlist(daemonPlist({entry: ENTRY, wireguard: 'auto', logLevel: 'info', createdGroup: true}))
  it('runs `mesh daemon run` of the installing mesh as root at boot', () => {
    expect(p).toEqual({
      Label: 'mesh.meshd',
      ProgramArguments: [
        ...ENTRY,
        'daemon',
        'run',
        '--socket',
        '/run/mesh/meshd.sock',
        '--state-dir',
        '/var/lib/mesh',
        '--wireguard',
        'auto',
        '--log-level',
        'info',
      ],
      RunAtLoad: true,
      KeepAlive: {SuccessfulExit: false}, // Restart=on-failure
      ThrottleInterval: 5,
      AbandonProcessGroup: true, // KillMode=process: wireguard-go outlives meshd
      StandardOutPath: '/var/log/meshd.log',
      StandardErrorPath: '/var/log/meshd.log',
    })
  })
})

describe('the controller plist', () => {
  it('runs as nobody with a 077 umask and passes the flags through, escaped', () => {
    const p = parsePlist(
      controllerPlist({
        entry: ENTRY,
        listen: '0.0.0.0:8080',
        publicUrl: 'https://ctl.example/?a=1&b=<2>',
        logLevel: 'warn',
        privilegedPorts: [],
        createdUser: false,
      }),
    ) as Record<string, Plist>
    expect(p.Label).toBe('mesh.controller')
    expect(p.UserName).toBe('nobody')
    expect(p.GroupName).toBe('nobody')
    expect(p.Umask).toBe(0o077)
    expect(p.KeepAlive).toEqual({SuccessfulExit: false})
    expect(p.ProgramArguments).toEqual([
      ...ENTRY,
      'controller',
      'start',
      '--data-dir',
      '/var/lib/mesh-controller',
      '--listen',
      '0.0.0.0:8080',
      '--public-url',
      'https://ctl.example/?a=1&b=<2>',
      '--log-level',
      'warn',
    ])
  })

  it('refuses control characters', () => {
    expect(() =>
      controllerPlist({
        entry: ENTRY,
        listen: '0.0.0.0:8080',
        publicUrl: 'x\u0007',
        logLevel: 'info',
        privilegedPorts: [],
        createdUser: false,
      }),
    ).toThrow(/control characters/)
  })
})
