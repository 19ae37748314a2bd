// One line per `mesh ping` attempt, like `tailscale ping`; --json prints the PingAttempt array.
import type {PingAttempt} from '../../../shared/protocol/local-api.js'
import {formatMs} from './netcheck.js'

/**
 * How the reply travelled: "relay", the direct endpoint, or — while the path is not settled
 * (probing, waiting, idle) — WireGuard's endpoint then with the path state beside it.
 */
export function via(a: PingAttempt): string {
  if (a.path === 'relay') return 'relay'
  if (a.endpoint === null) return a.path
  return a.path === 'direct' ? a.endpoint : `${a.endpoint} (${a.path})`
}

export function pingLine(a: PingAttempt, timeoutMs: number): string {
  const who = `${a.peer} (${a.address})`
  if (a.rttMs === null) return `no reply from ${who} within ${formatMs(timeoutMs)}`
  return `pong from ${who} via ${via(a)} in ${formatMs(a.rttMs)}`
}
