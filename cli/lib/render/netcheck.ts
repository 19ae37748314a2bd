// Plain-text rendering of `mesh netcheck` for people; --json prints the NetcheckResult itself.
import type {NetEndpoint} from '../../../shared/nat/net-report.js'
import type {NetcheckResult, RelayCheck} from '../../../shared/protocol/local-api.js'
import {renderFields} from './table.js'

const ep = (e: NetEndpoint | null): string | null =>
  e === null ? null : e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`

/** 0.42 ms, 12.3 ms, 250 ms: two significant digits below 100 ms. */
export function formatMs(ms: number): string {
  if (ms < 10) return `${ms.toFixed(2)} ms`
  if (ms < 100) return `${ms.toFixed(1)} ms`
  return `${Math.round(ms)} ms`
}

const yesNo = (v: boolean | null): string => (v === null ? 'unknown' : v ? 'yes' : 'no')

/** One relay; with several, the home relay is marked. */
export function relayLine(r: RelayCheck, several = false): string {
  const region = several && r.home === true ? `${r.region} (home)` : r.region
  return r.reachable
    ? `${region}: reachable, ${r.latencyMs === null ? '?' : formatMs(r.latencyMs)} (${r.url})`
    : `${region}: unreachable (${r.error ?? 'no answer'}; ${r.url})`
}

export function netcheckText(r: NetcheckResult): string {
  const relays: [string, string][] =
    r.relays.length === 0
      ? [['relay', 'none offered by the controller']]
      : r.relays.map((x) => ['relay', relayLine(x, r.relays.length > 1)])
  return renderFields([
    ['network', `${r.network} (controller ${r.controller})`],
    [
      'STUN server',
      `${ep(r.server)}${r.otherAddress === null ? '' : `, alternate ${ep(r.otherAddress)}`}${
        r.latencyMs === null ? '' : ` (answered in ${formatMs(r.latencyMs)})`
      }`,
    ],
    ['UDP', r.udp ? 'yes' : 'no (no answer from the STUN server)'],
    [
      'public address',
      r.publicEndpoint === null
        ? null
        : `${ep(r.publicEndpoint)}${r.behindNat === null ? '' : r.behindNat ? ' (behind NAT)' : ' (no NAT)'}`,
    ],
    ['mapping', r.udp ? r.mapping : null],
    ['filtering', r.udp ? r.filtering : null],
    ['port preserved', r.udp ? yesNo(r.portPreserved) : null],
    ...relays,
    ['verdict', r.verdict],
  ])
}
