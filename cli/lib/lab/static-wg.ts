/**
 * A hand-configured wireguard-go tunnel between two bare lab hosts (keys from `wg genkey`, peers
 * set with `wg set`): the baseline the benchmark holds mesh against, with no controller and no
 * daemon in the way.
 */
import fs from 'node:fs'
import path from 'node:path'
import type {Lab} from './lab.js'
import {runOk, waitFor} from './sh.js'
import type {LabNode} from './state.js'

export interface StaticPair {
  ifaces: [string, string]
  addresses: [string, string]
}

const LISTEN_PORT = 51900

/**
 * Brings up `<prefix>s<index>` on both hosts with addresses 10.250.<tag>.1 and .2 and each other
 * as the only peer. Resolves once both interfaces are configured (not yet handshaken).
 */
export async function staticPair(lab: Lab, a: LabNode, b: LabNode, tag = 0): Promise<StaticPair> {
  const hosts = [a, b] as const
  const ifaces: [string, string] = [`${lab.prefix}s${a.index}t${tag}`, `${lab.prefix}s${b.index}t${tag}`]
  const addresses: [string, string] = [`10.250.${tag}.1`, `10.250.${tag}.2`]
  const dir = path.join(lab.runDir, 'static')
  fs.mkdirSync(dir, {recursive: true, mode: 0o700})
  const keys = await Promise.all(
    hosts.map(async (h, i) => {
      const priv = (await runOk('wg', ['genkey'])).trim()
      const pub = (await runOk('wg', ['pubkey'], {input: `${priv}\n`})).trim()
      const file = path.join(dir, `${ifaces[i]}.key`)
      fs.writeFileSync(file, `${priv}\n`, {mode: 0o600})
      return {file, pub, host: h}
    }),
  )
  await Promise.all(
    hosts.map(async (h, i) => {
      const iface = ifaces[i]!
      // Foreground, so the lab records its pid and stops it like any other process.
      lab.startHelper(h, `wireguard-go-${iface}`, ['wireguard-go', '-f', iface])
      await waitFor(`wireguard-go ${iface}`, () => fs.existsSync(`/var/run/wireguard/${iface}.sock`), {
        timeoutMs: 10_000,
        intervalMs: 20,
      })
    }),
  )
  await Promise.all(
    hosts.map(async (h, i) => {
      const other = i === 0 ? 1 : 0
      const iface = ifaces[i]!
      const peer = hosts[other]!
      await runOk(
        'wg',
        [
          'set',
          iface,
          'listen-port',
          String(LISTEN_PORT + tag),
          'private-key',
          keys[i]!.file,
          'peer',
          keys[other]!.pub,
          'allowed-ips',
          `${addresses[other]}/32`,
          'endpoint',
          `${peer.underlay}:${LISTEN_PORT + tag}`,
        ],
        {ns: h.ns},
      )
      await runOk('ip', ['-n', h.ns, 'addr', 'add', `${addresses[i]}/24`, 'dev', iface])
      await runOk('ip', ['-n', h.ns, 'link', 'set', iface, 'up'])
    }),
  )
  return {ifaces, addresses}
}
