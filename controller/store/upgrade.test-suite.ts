/**
 * Upgrades from every released schema version, for each adapter: a database made by a binary
 * that stopped at migration k, holding data written then, opens with this binary, keeps its
 * data and takes new writes. Call storeUpgrades() from an adapter's test file.
 */
import {describe, expect, it} from 'vitest'
import {verifyAuditChain} from '../domain/audit.js'
import {storeWrites} from '../domain/writes.js'
import {ctx} from './contract.test-suite.js'
import type {Store} from './store.js'

export interface UpgradeSubject {
  /** Migration names, oldest first (the adapter's list). */
  readonly migrations: readonly string[]
  /** A fresh empty database migrated up to and including `upTo`; runs `seed` SQL on it. */
  createAt(upTo: number, seed: readonly string[]): Promise<{open(): Promise<Store>}>
}

/** Rows every schema version has had since 0001, as plain SQL both dialects take. */
const SEED = [
  `INSERT INTO tenants (id, name, created_at) VALUES ('t_old', 'old', '2026-01-01T00:00:00.000Z')`,
  `INSERT INTO users (id, tenant_id, username, password_hash, role, superuser, created_at)
     VALUES ('u_old', 't_old', 'olduser', 'x', 'owner', 0, '2026-01-01T00:00:00.000Z')`,
  `INSERT INTO networks (id, tenant_id, name, cidr, description, join_policy, ipam_cursor, netmap_version, created_at)
     VALUES ('n_old', 't_old', 'lab', '10.9.0.0/24', '', 'open', 168361985, 1, '2026-01-01T00:00:00.000Z')`,
  `INSERT INTO nodes (id, network_id, name, hostname, os, public_key, address, credential_hash, status, endpoints, tags, ephemeral, created_at)
     VALUES ('nd_old', 'n_old', 'web', 'web', 'linux', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 168361985, 'cred_old', 'active', '[]', '[]', 0, '2026-01-01T00:00:00.000Z')`,
  `INSERT INTO netmap_changes (network_id, version, node_id) VALUES ('n_old', 1, 'nd_old')`,
  `INSERT INTO tokens (id, token_hash, user_id, created_at, expires_at)
     VALUES ('tok_old', 'hash_old', 'u_old', '2026-01-01T00:00:00.000Z', '2030-01-01T00:00:00.000Z')`,
  `INSERT INTO audit (at, tenant_id, actor, actor_name, action, target_type, target_id, network_id, source_address, request_id, detail)
     VALUES ('2026-01-01T00:00:00.000Z', 't_old', 'user:u_old', 'olduser', 'network.create', 'network', 'n_old', 'n_old', NULL, NULL, '{}')`,
]

export function storeUpgrades(name: string, subject: () => Promise<UpgradeSubject>) {
  describe(`Store upgrades: ${name}`, () => {
    it('opens a database of every released schema version with its data intact and takes new writes', async () => {
      const s = await subject()
      // Every version but the newest (that one is the fresh database of the contract suite).
      for (let k = 0; k < s.migrations.length - 1; k++) {
        const at = await s.createAt(k, SEED)
        const store = await at.open()
        try {
          const what = `from ${s.migrations[k]}`
          expect((await store.getNode('nd_old'))?.address, what).toBe('10.9.0.1')
          expect((await store.getNetwork('n_old'))?.nodeCount, what).toBe(1)
          expect(await store.netmapVersion('n_old'), what).toBe(1)
          const w = storeWrites(store)
          const key = Buffer.alloc(32, k + 1).toString('base64')
          const added = await w.registerNode(
            {kind: 'open', networkId: 'n_old'},
            {
              id: `nd_new${k}`,
              name: 'web',
              hostname: 'w',
              os: 'linux',
              publicKey: key,
              endpoints: [],
              credentialHash: `c${k}`,
            },
            ctx(),
          )
          expect(added.node?.name, what).toBe('web-2')
          expect(added.node?.address, what).toBe('10.9.0.2')
          expect(await store.changesSince('n_old', 1), what).toEqual({version: 2, nodeIds: [`nd_new${k}`]})
          // The audit chain of 0011 starts with the first entry written after the upgrade; the
          // entry from before is counted as not covered, and still listed.
          expect(await verifyAuditChain(store, 't_old'), what).toMatchObject({
            ok: true,
            checked: 1,
            unchained: 1,
          })
          expect((await store.listAudit({tenantId: 't_old'}, {limit: 10})).items, what).toHaveLength(2)
          // The NAT columns of 0009: none for a node stored before, then written like any node change.
          expect((await store.getNode('nd_old'))?.nat, what).toBeUndefined()
          // 0014: a token from before has no session and still authenticates until its expiry.
          expect(await store.getToken('hash_old'), what).toMatchObject({
            userId: 'u_old',
            expiresAt: '2030-01-01T00:00:00.000Z',
            sessionId: null,
          })
          // 0012: a node from before has no owner.
          expect(await store.getNode('nd_old'), what).not.toHaveProperty('ownerId')
          const nat = {mapping: 'endpoint-dependent', filtering: 'address-dependent'} as const
          expect((await w.setNodeNat('nd_old', nat))?.node?.nat, what).toEqual(nat)
          expect((await store.getNode('nd_old'))?.address, what).toBe('10.9.0.1')
          // The relay tables of 0007 are there and take writes.
          const rk = await w.createRelayKey(
            {
              id: `rk_${k}`,
              name: 'eu',
              region: 'eu',
              keyHash: `${k}`.padStart(64, '0'),
              prefix: 'mrelay_',
              createdBy: null,
            },
            ctx(),
            null,
          )
          await w.relayHeartbeat({
            url: 'https://relay.example',
            kind: 'standalone',
            region: 'eu',
            keyId: rk.id,
            connected: 0,
            at: '2026-11-22T00:00:00.000Z',
            expiresAt: '2026-11-22T00:00:15.000Z',
          })
          expect(
            (await store.liveRelays('2026-11-22T00:00:00.000Z')).map((r) => r.url),
            what,
          ).toEqual(['https://relay.example'])
        } finally {
          await store.close()
        }
      }
    })

    it('keeps the pairs stored before per-side path state (0008) as neither side reporting, then merges new sides', async () => {
      const s = await subject()
      const from = s.migrations.indexOf('0005-connections')
      const to = s.migrations.indexOf('0008-connection-sides')
      expect(from).toBeGreaterThanOrEqual(0)
      expect(to).toBeGreaterThan(from)
      for (let k = from; k < to; k++) {
        const at = await s.createAt(k, [...SEED, ...PAIR_SEED])
        const store = await at.open()
        try {
          const what = `from ${s.migrations[k]}`
          const stored = {
            nodeA: 'nd_old',
            nodeB: 'nd_old2',
            path: 'direct',
            latencyMs: 7,
            endpointA: '198.51.100.1:51820',
            endpointB: null,
            since: '2026-01-02T00:00:00.000Z',
            updatedAt: '2026-01-02T00:00:00.000Z',
          }
          expect(await store.allConnections('n_old'), what).toEqual([stored])
          const [row] = await store.write((tx) =>
            tx.lockConnections('n_old', [{nodeA: 'nd_old', nodeB: 'nd_old2'}], '2026-01-03T00:00:00.000Z'),
          )
          expect(row, what).toEqual({...stored, sideA: null, sideB: null, heldA: false, heldB: false})
          // The first side written after the upgrade decides alone: b says relay.
          const w = await storeWrites(store).writeConnectionSides(
            'n_old',
            'r1',
            [{nodeA: 'nd_old', nodeB: 'nd_old2', b: {path: 'relay', latencyMs: 40, endpoint: null}}],
            '2026-01-03T00:00:00.000Z',
          )
          expect(
            w.logged.map((e) => [e.event, e.from, e.to]),
            what,
          ).toEqual([['fell_back_to_relay', 'direct', 'relay']])
          expect((await store.allConnections('n_old'))[0], what).toMatchObject({path: 'relay', latencyMs: 40})
        } finally {
          await store.close()
        }
      }
    })
  })
}

/** A second node and a stored pair, for schema versions that have the connections table (0005). */
const PAIR_SEED = [
  `INSERT INTO nodes (id, network_id, name, hostname, os, public_key, address, credential_hash, status, endpoints, tags, ephemeral, created_at)
     VALUES ('nd_old2', 'n_old', 'db', 'db', 'linux', 'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=', 168361986, 'cred_old2', 'active', '[]', '[]', 0, '2026-01-01T00:00:00.000Z')`,
  `INSERT INTO connections (network_id, node_a, node_b, path, latency_ms, endpoint_a, endpoint_b, since, updated_at)
     VALUES ('n_old', 'nd_old', 'nd_old2', 'direct', 7, '198.51.100.1:51820', NULL, '2026-01-02T00:00:00.000Z', '2026-01-02T00:00:00.000Z')`,
]
