/**
 * The Store contract: one suite that every adapter (SQLite now, PostgreSQL later) must pass.
 * Call storeContract() from an adapter's test file with a factory for a fresh, empty store.
 */
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import nacl from 'tweetnacl'
import {isMeshError} from '../../shared/errors.js'
import {
  CONNECTION_LOG_KEEP,
  type AuditContext,
  type ConnectionSide,
  type ConnectionWrite,
  type NewNode,
  type Store,
} from './store.js'
import {appendAudit, verifyAuditChain} from '../domain/audit.js'
import {storeWrites, type Writes} from '../domain/writes.js'
import type {OidcLogin} from '../domain/identities.js'

const key = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString('base64')

let seq = 0
const uid = (p: string) => `${p}_${++seq}_${Math.random().toString(36).slice(2, 8)}`

export const ctx = (over: Partial<AuditContext> = {}): AuditContext => ({
  actor: 'user:u_test',
  actorName: 'tester',
  sourceAddress: '127.0.0.1',
  requestId: `req-${++seq}`,
  at: '2026-11-22T00:00:00.000Z',
  ...over,
})

const newNode = (over: Partial<NewNode> = {}): NewNode => ({
  id: uid('nd'),
  name: 'web',
  hostname: 'web.example',
  os: 'linux',
  publicKey: key(),
  endpoints: [],
  credentialHash: uid('cred'),
  ...over,
})

/** Resolves to the error code a promise rejects with (fails the test when it resolves). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    if (isMeshError(err)) return err.code
    throw err
  }
  throw new Error('expected a MeshError, but the call succeeded')
}

/**
 * What an adapter's test gives the suite: a fresh, empty store, and a way to clean up.
 * `openPeer` opens a second store on the same database, as a second controller replica would
 * (its own connections); without it, the race tests run both sides on the one store.
 */
export interface ContractSubject {
  readonly store: Store
  cleanup(): Promise<void>
  openPeer?(): Promise<Store>
  /**
   * Writes a `presence` row (node held by replica until expiresAt), as SharedPresence does on
   * PostgreSQL; on SQLite the table exists but the controller keeps presence in memory.
   */
  holdPresence(nodeId: string, replica: string, expiresAt: string): Promise<void>
}

export function storeContract(name: string, open: () => Promise<ContractSubject>) {
  describe(`Store contract: ${name}`, () => {
    let store: Store
    let writes: Writes
    let cleanup: () => Promise<void>
    let holdPresence: ContractSubject['holdPresence']
    let tenantId: string
    /** The second replica's writes (the same store when the adapter has no peers). */
    let peer: {store: Store; writes: Writes}
    const peers: Store[] = []

    beforeEach(async () => {
      const subject = await open()
      ;({store, cleanup, holdPresence} = subject)
      writes = storeWrites(store)
      const other = subject.openPeer ? await subject.openPeer() : store
      if (other !== store) peers.push(other)
      peer = {store: other, writes: storeWrites(other)}
      const {tenant} = await writes.createTenantWithOwner(
        {id: uid('t'), name: 'acme'},
        {id: uid('u'), username: 'boss', passwordHash: 'x', superuser: true},
        ctx(),
      )
      tenantId = tenant.id
    })
    afterEach(async () => {
      for (const p of peers.splice(0)) await p.close()
      await store.close()
      await cleanup()
    })

    const makeNetwork = (
      over: {
        name?: string
        cidr?: string
        joinPolicy?: 'open' | 'invite' | 'approval'
        maxNodes?: number | null
      } = {},
    ) =>
      writes.createNetwork(
        {
          id: uid('n'),
          tenantId,
          name: over.name ?? uid('net').replace(/_/g, '-').toLowerCase(),
          cidr: over.cidr ?? '10.0.0.0/24',
          description: '',
          joinPolicy: over.joinPolicy ?? 'invite',
          maxNodes: over.maxNodes ?? null,
        },
        ctx(),
      )

    const makeKey = (
      networkId: string,
      over: {
        reusable?: boolean
        preApproved?: boolean
        ephemeral?: boolean
        tags?: string[]
        expiresAt?: string
      } = {},
    ) => {
      const keyHash = uid('kh')
      return writes
        .createAuthKey(
          {
            id: uid('ak'),
            networkId,
            keyHash,
            prefix: 'mkey_abc',
            reusable: over.reusable ?? true,
            ephemeral: over.ephemeral ?? false,
            preApproved: over.preApproved ?? false,
            tags: over.tags ?? [],
            expiresAt: over.expiresAt ?? '2030-01-01T00:00:00.000Z',
            createdBy: 'u_test',
          },
          ctx(),
        )
        .then((k) => ({...k, keyHash}))
    }

    it('keeps user names unique across tenants and tenant names unique', async () => {
      expect(
        await codeOf(
          writes.createTenantWithOwner(
            {id: uid('t'), name: 'other'},
            {id: uid('u'), username: 'boss', passwordHash: 'x', superuser: false},
            ctx(),
          ),
        ),
      ).toBe('USERNAME_TAKEN')
      expect(
        await codeOf(
          writes.createTenantWithOwner(
            {id: uid('t'), name: 'acme'},
            {id: uid('u'), username: 'someone', passwordHash: 'x', superuser: false},
            ctx(),
          ),
        ),
      ).toBe('TENANT_NAME_TAKEN')
      expect(
        await codeOf(
          writes.createUser(
            {id: uid('u'), tenantId, username: 'boss', passwordHash: 'x', role: 'member'},
            ctx(),
          ),
        ),
      ).toBe('USERNAME_TAKEN')
    })

    it('keeps network names unique per tenant and refuses overlapping CIDRs within a tenant only', async () => {
      await makeNetwork({name: 'home', cidr: '10.1.0.0/16'})
      expect(await codeOf(makeNetwork({name: 'home', cidr: '10.2.0.0/16'}))).toBe('NETWORK_NAME_TAKEN')
      expect(await codeOf(makeNetwork({name: 'lab', cidr: '10.1.5.0/24'}))).toBe('CIDR_OVERLAP')
      expect(await codeOf(makeNetwork({name: 'big', cidr: '10.0.0.0/8'}))).toBe('CIDR_OVERLAP')
      const {tenant: other} = await writes.createTenantWithOwner(
        {id: uid('t'), name: 'other'},
        {id: uid('u'), username: 'other-boss', passwordHash: 'x', superuser: false},
        ctx(),
      )
      const same = await writes.createNetwork(
        {
          id: uid('n'),
          tenantId: other.id,
          name: 'home',
          cidr: '10.1.0.0/16',
          description: '',
          joinPolicy: 'open',
          maxNodes: null,
        },
        ctx(),
      )
      expect(same.name).toBe('home')
    })

    it('writes exactly one audit entry per mutation, with actor, source address and request id', async () => {
      const before = (await store.listAudit({tenantId}, {limit: 500})).items.length
      const c = ctx({
        actor: 'user:u_x',
        actorName: 'xavier',
        sourceAddress: '203.0.113.9',
        requestId: 'req-audit',
      })
      const net = await writes.createNetwork(
        {
          id: uid('n'),
          tenantId,
          name: 'audited',
          cidr: '10.50.0.0/24',
          description: 'd',
          joinPolicy: 'open',
          maxNodes: null,
        },
        c,
      )
      const all = (await store.listAudit({tenantId}, {limit: 500})).items
      expect(all.length).toBe(before + 1)
      expect(all[0]).toMatchObject({
        action: 'network.create',
        actor: 'user:u_x',
        actorName: 'xavier',
        sourceAddress: '203.0.113.9',
        requestId: 'req-audit',
        targetType: 'network',
        targetId: net.id,
        networkId: net.id,
        tenantId,
      })
    })

    it('writes no audit entry and no change when a mutation fails', async () => {
      await makeNetwork({name: 'one', cidr: '10.60.0.0/24'})
      const before = (await store.listAudit({tenantId}, {limit: 500})).items.length
      await codeOf(makeNetwork({name: 'one', cidr: '10.61.0.0/24'}))
      await codeOf(writes.registerNode({kind: 'authkey', keyHash: 'nope'}, newNode(), ctx()))
      expect((await store.listAudit({tenantId}, {limit: 500})).items.length).toBe(before)
    })

    it("records who let a node in: the registering user, or the invite's or auth key's creator", async () => {
      const open = await makeNetwork({joinPolicy: 'open', cidr: '10.96.0.0/24'})
      const byUser = await writes.registerNode(
        {kind: 'open', networkId: open.id, userId: 'u_alice'},
        newNode(),
        ctx(),
      )
      expect(byUser.node?.ownerId).toBe('u_alice')
      expect((await store.getNode(byUser.nodeId))?.ownerId).toBe('u_alice')
      const invited = await makeNetwork({joinPolicy: 'invite', cidr: '10.96.1.0/24'})
      const codeHash = uid('ch')
      await writes.createInvite(
        {
          id: uid('iv'),
          networkId: invited.id,
          codeHash,
          role: 'member',
          maxUses: 1,
          expiresAt: '2030-01-01T00:00:00.000Z',
          createdBy: 'u_bob',
        },
        ctx(),
      )
      const byInvite = await writes.registerNode({kind: 'invite', codeHash}, newNode(), ctx())
      expect(byInvite.node?.ownerId).toBe('u_bob')
      // Unknown (a proof that names nobody): no owner at all, not an empty one.
      const nobody = await writes.registerNode({kind: 'open', networkId: open.id}, newNode(), ctx())
      expect(nobody.node).not.toHaveProperty('ownerId')
    })

    it('checks invites inside registration: invalid, revoked, expired, used up; counts uses', async () => {
      const net = await makeNetwork({joinPolicy: 'invite'})
      const mk = async (over: {maxUses?: number | null; expiresAt?: string} = {}) => {
        const codeHash = uid('ch')
        const inv = await writes.createInvite(
          {
            id: uid('iv'),
            networkId: net.id,
            codeHash,
            role: 'member',
            maxUses: over.maxUses === undefined ? 1 : over.maxUses,
            expiresAt: over.expiresAt ?? '2030-01-01T00:00:00.000Z',
            createdBy: 'u_test',
          },
          ctx(),
        )
        return {inv, codeHash}
      }
      expect(await codeOf(writes.registerNode({kind: 'invite', codeHash: 'unknown'}, newNode(), ctx()))).toBe(
        'INVITE_INVALID',
      )
      const once = await mk()
      const change = await writes.registerNode({kind: 'invite', codeHash: once.codeHash}, newNode(), ctx())
      expect(change.node?.status).toBe('active')
      expect((await store.getInvite(once.inv.id))?.uses).toBe(1)
      expect(
        await codeOf(writes.registerNode({kind: 'invite', codeHash: once.codeHash}, newNode(), ctx())),
      ).toBe('INVITE_USED_UP')
      const expired = await mk({expiresAt: '2026-11-21T00:00:00.000Z'})
      expect(
        await codeOf(writes.registerNode({kind: 'invite', codeHash: expired.codeHash}, newNode(), ctx())),
      ).toBe('INVITE_EXPIRED')
      const revoked = await mk({maxUses: null})
      await writes.revokeInvite(revoked.inv.id, ctx())
      expect(
        await codeOf(writes.registerNode({kind: 'invite', codeHash: revoked.codeHash}, newNode(), ctx())),
      ).toBe('INVITE_REVOKED')
    })

    it('checks auth keys: single use, revoked, expired; pre-approval, ephemeral and tags carry over', async () => {
      const net = await makeNetwork({joinPolicy: 'approval'})
      const single = await makeKey(net.id, {reusable: false})
      const first = await writes.registerNode(
        {kind: 'authkey', keyHash: single.keyHash},
        newNode({name: 'a'}),
        ctx(),
      )
      expect(first.node?.status).toBe('pending')
      expect(
        await codeOf(writes.registerNode({kind: 'authkey', keyHash: single.keyHash}, newNode(), ctx())),
      ).toBe('AUTHKEY_USED')
      const pre = await makeKey(net.id, {preApproved: true, ephemeral: true, tags: ['tag:ci']})
      const n = await writes.registerNode(
        {kind: 'authkey', keyHash: pre.keyHash},
        newNode({name: 'b'}),
        ctx(),
      )
      expect(n.node).toMatchObject({status: 'active', ephemeral: true, tags: ['tag:ci']})
      const expired = await makeKey(net.id, {expiresAt: '2026-01-01T00:00:00.000Z'})
      expect(
        await codeOf(writes.registerNode({kind: 'authkey', keyHash: expired.keyHash}, newNode(), ctx())),
      ).toBe('AUTHKEY_EXPIRED')
      await writes.revokeAuthKey(pre.id, ctx())
      expect(
        await codeOf(writes.registerNode({kind: 'authkey', keyHash: pre.keyHash}, newNode(), ctx())),
      ).toBe('AUTHKEY_REVOKED')
    })

    it('suffixes a taken node name, refuses a taken public key and a rename onto a taken name', async () => {
      const net = await makeNetwork({joinPolicy: 'open'})
      const names: string[] = []
      for (let i = 0; i < 3; i++) {
        names.push(
          (await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'web'}), ctx())).node!
            .name,
        )
      }
      expect(names).toEqual(['web', 'web-2', 'web-3'])
      const pk = key()
      await writes.registerNode(
        {kind: 'open', networkId: net.id},
        newNode({name: 'db', publicKey: pk}),
        ctx(),
      )
      expect(
        await codeOf(
          writes.registerNode(
            {kind: 'open', networkId: net.id},
            newNode({name: 'db2', publicKey: pk}),
            ctx(),
          ),
        ),
      ).toBe('PUBLIC_KEY_TAKEN')
      const nodes = await store.allNodes(net.id)
      expect(await codeOf(writes.renameNode(nodes[1]!.id, 'web', ctx()))).toBe('NODE_NAME_TAKEN')
    })

    it('enforces max nodes and address pool exhaustion, never two nodes on one address', async () => {
      const capped = await makeNetwork({cidr: '10.70.0.0/24', joinPolicy: 'open', maxNodes: 2})
      await writes.registerNode({kind: 'open', networkId: capped.id}, newNode({name: 'a'}), ctx())
      await writes.registerNode({kind: 'open', networkId: capped.id}, newNode({name: 'b'}), ctx())
      expect(await codeOf(writes.registerNode({kind: 'open', networkId: capped.id}, newNode(), ctx()))).toBe(
        'NETWORK_MAX_NODES',
      )
      const tiny = await makeNetwork({cidr: '10.71.0.0/30', joinPolicy: 'open'})
      const a = await writes.registerNode({kind: 'open', networkId: tiny.id}, newNode({name: 'a'}), ctx())
      const b = await writes.registerNode({kind: 'open', networkId: tiny.id}, newNode({name: 'b'}), ctx())
      expect([a.node!.address, b.node!.address]).toEqual(['10.71.0.1', '10.71.0.2'])
      expect(await codeOf(writes.registerNode({kind: 'open', networkId: tiny.id}, newNode(), ctx()))).toBe(
        'ADDRESS_POOL_EXHAUSTED',
      )
      // A removed node's address is free again only once the cursor wraps.
      await writes.removeNode(a.nodeId, ctx())
      const c = await writes.registerNode({kind: 'open', networkId: tiny.id}, newNode({name: 'c'}), ctx())
      expect(c.node!.address).toBe('10.71.0.1')
    })

    it('bumps the netmap version once per node change and reports what changed since a version', async () => {
      const net = await makeNetwork({joinPolicy: 'approval'})
      const k = await makeKey(net.id)
      expect(await store.netmapVersion(net.id)).toBe(0)
      const a = await writes.registerNode({kind: 'authkey', keyHash: k.keyHash}, newNode({name: 'a'}), ctx())
      const b = await writes.registerNode({kind: 'authkey', keyHash: k.keyHash}, newNode({name: 'b'}), ctx())
      expect([a.version, b.version]).toEqual([1, 2])
      const approved = await writes.approveNode(a.nodeId, ctx())
      expect(approved).toMatchObject({version: 3, kind: 'changed'})
      expect(approved.node?.status).toBe('active')
      expect(await codeOf(writes.approveNode(a.nodeId, ctx()))).toBe('NODE_NOT_PENDING')
      expect(await writes.setNodeEndpoints(b.nodeId, [], ctx().at)).toBeUndefined()
      const ep = await writes.setNodeEndpoints(b.nodeId, ['198.51.100.7:51820'], ctx().at)
      expect(ep?.version).toBe(4)
      expect(await store.changesSince(net.id, 2)).toEqual({
        version: 4,
        nodeIds: expect.arrayContaining([a.nodeId, b.nodeId]),
      })
      expect(await store.changesSince(net.id, 4)).toEqual({version: 4, nodeIds: []})
      expect(await store.changesSince(net.id, 99)).toBeUndefined()
      const removed = await writes.removeNode(b.nodeId, ctx())
      expect(removed).toMatchObject({kind: 'removed', node: null, version: 5})
      expect(removed.before?.id).toBe(b.nodeId)
    })

    it('writes no audit entry for endpoint telemetry, and audits a self-removal as node.leave', async () => {
      const net = await makeNetwork({joinPolicy: 'open', cidr: '10.72.0.0/24'})
      const a = await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'a'}), ctx())
      const ep = await writes.setNodeEndpoints(a.nodeId, ['198.51.100.9:51820'], ctx().at)
      expect(ep?.node?.endpoints).toEqual(['198.51.100.9:51820'])
      const left = await writes.removeNode(a.nodeId, ctx({actor: `node:${a.nodeId}`}), 'node.leave')
      expect(left).toMatchObject({kind: 'removed', node: null})
      const entries = (await store.listAudit({tenantId, networkId: net.id}, {limit: 500})).items
      expect(entries.filter((e) => e.targetId === a.nodeId).map((e) => e.action)).toEqual(
        expect.arrayContaining(['node.leave']),
      )
      expect(entries.filter((e) => e.action === 'node.endpoints')).toEqual([])
      expect(entries.find((e) => e.action === 'node.leave')?.actor).toBe(`node:${a.nodeId}`)
    })

    it('stores the NAT behaviour a node reports as a node change, writes nothing for the same (or unknown over none), no audit', async () => {
      const net = await makeNetwork({joinPolicy: 'open', cidr: '10.82.0.0/24'})
      const a = await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'a'}), ctx())
      expect((await store.getNode(a.nodeId))?.nat).toBeUndefined()
      // Unknown over none is no change (peers take none as unknown): nothing written.
      expect(await writes.setNodeNat(a.nodeId, {mapping: 'unknown', filtering: 'unknown'})).toBeUndefined()
      const sym = {mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent'} as const
      const set = await writes.setNodeNat(a.nodeId, sym)
      expect(set).toMatchObject({kind: 'changed', version: a.version + 1, before: {id: a.nodeId}})
      expect(set?.before?.nat).toBeUndefined()
      expect(set?.node?.nat).toEqual(sym)
      expect(await writes.setNodeNat(a.nodeId, {...sym})).toBeUndefined()
      // Other writes keep it; a new value replaces both columns; unknown once known is stored.
      const reported = await writes.setNodeEndpoints(a.nodeId, ['198.51.100.9:51820'], ctx().at)
      expect(reported?.node?.nat).toEqual(sym)
      const cone = {mapping: 'endpoint-independent', filtering: 'address-dependent'} as const
      expect((await writes.setNodeNat(a.nodeId, cone))?.node?.nat).toEqual(cone)
      const unknown = {mapping: 'unknown', filtering: 'unknown'} as const
      expect((await writes.setNodeNat(a.nodeId, unknown))?.node?.nat).toEqual(unknown)
      expect((await store.allNodes(net.id)).find((n) => n.id === a.nodeId)?.nat).toEqual(unknown)
      expect(await store.changesSince(net.id, a.version)).toEqual({
        version: a.version + 4,
        nodeIds: [a.nodeId],
      })
      await expect(writes.setNodeNat('nd_missing', sym)).rejects.toMatchObject({code: 'NOT_FOUND'})
      // The columns' CHECKs refuse a name that is not RFC 4787's, whoever writes it; nothing changes.
      const bad = {mapping: 'full-cone', filtering: 'unknown'} as unknown as typeof sym
      await expect(store.write((tx) => tx.updateNode(a.nodeId, {nat: bad}))).rejects.toThrow()
      expect((await store.getNode(a.nodeId))?.nat).toEqual(unknown)
      const entries = (await store.listAudit({tenantId, networkId: net.id}, {limit: 500})).items
      expect(entries.filter((e) => e.targetId === a.nodeId).map((e) => e.action)).toEqual(['node.register'])
    })

    it('keeps the observed endpoint apart: reports never touch it, an unchanged one writes nothing, no audit', async () => {
      const net = await makeNetwork({joinPolicy: 'open', cidr: '10.73.0.0/24'})
      const a = await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'a'}), ctx())
      expect((await store.getNode(a.nodeId))?.observedEndpoint).toBeUndefined()
      const seen = await writes.setNodeObservedEndpoint(a.nodeId, '203.0.113.40:41641')
      expect(seen).toMatchObject({kind: 'changed', version: a.version + 1})
      expect(seen?.node?.observedEndpoint).toBe('203.0.113.40:41641')
      expect(seen?.node?.endpoints).toEqual([])
      expect(await writes.setNodeObservedEndpoint(a.nodeId, '203.0.113.40:41641')).toBeUndefined()
      const reported = await writes.setNodeEndpoints(a.nodeId, ['198.51.100.9:51820'], ctx().at)
      expect(reported?.node).toMatchObject({
        endpoints: ['198.51.100.9:51820'],
        observedEndpoint: '203.0.113.40:41641',
      })
      expect(await store.changesSince(net.id, a.version)).toEqual({
        version: a.version + 2,
        nodeIds: [a.nodeId],
      })
      expect((await store.activeNodeKeys()).find((k) => k.id === a.nodeId)?.publicKey).toBe(
        reported?.node?.publicKey,
      )
      const entries = (await store.listAudit({tenantId, networkId: net.id}, {limit: 500})).items
      expect(entries.filter((e) => e.targetId === a.nodeId).map((e) => e.action)).toEqual(['node.register'])
    })

    it('stores the current path of a pair, logs path changes only, and removes the row at none', async () => {
      const net = await makeNetwork({joinPolicy: 'open', cidr: '10.74.0.0/24'})
      const ids = [
        (await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'a'}), ctx())).nodeId,
        (await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'b'}), ctx())).nodeId,
      ].sort()
      const [a, b] = ids as [string, string]
      const pair = (over: Partial<ConnectionWrite>): ConnectionWrite => ({
        nodeA: a,
        nodeB: b,
        path: 'relay',
        latencyMs: 30,
        endpointA: null,
        endpointB: null,
        ...over,
      })
      const t0 = '2026-11-22T10:00:00.000Z'
      const logged = await writes.writeConnections(
        net.id,
        [pair({event: {event: 'connected', from: 'none'}})],
        t0,
      )
      expect(logged).toEqual([
        {
          id: expect.any(Number),
          at: t0,
          a: {id: a, name: expect.any(String)},
          b: {id: b, name: expect.any(String)},
          event: 'connected',
          from: 'none',
          to: 'relay',
          latencyMs: 30,
        },
      ])
      // A latency update without an event keeps `since` and logs nothing.
      const t1 = '2026-11-22T10:00:05.000Z'
      expect(await writes.writeConnections(net.id, [pair({latencyMs: 45})], t1)).toEqual([])
      expect(await store.allConnections(net.id)).toEqual([
        {
          nodeA: a,
          nodeB: b,
          path: 'relay',
          latencyMs: 45,
          endpointA: null,
          endpointB: null,
          since: t0,
          updatedAt: t1,
        },
      ])
      const t2 = '2026-11-22T10:00:09.000Z'
      await writes.writeConnections(
        net.id,
        [
          pair({
            path: 'direct',
            latencyMs: 4,
            endpointA: '198.51.100.2:51820',
            event: {event: 'upgraded_to_direct', from: 'relay'},
          }),
        ],
        t2,
      )
      const listed = await store.listConnections(net.id, {nodeId: b}, {limit: 10})
      expect(listed.items).toEqual([
        {
          a: {id: a, name: expect.any(String)},
          b: {id: b, name: expect.any(String)},
          path: 'direct',
          latencyMs: 4,
          endpoints: {a: '198.51.100.2:51820', b: null},
          since: t2,
          updatedAt: t2,
        },
      ])
      expect((await store.listConnections(net.id, {nodeId: 'nd_other'}, {limit: 10})).items).toEqual([])
      await writes.writeConnections(
        net.id,
        [pair({path: 'none', latencyMs: null, event: {event: 'disconnected', from: 'direct'}})],
        '2026-11-22T10:01:00.000Z',
      )
      expect(await store.allConnections(net.id)).toEqual([])
      const log = await store.connectionLog(net.id, {}, {limit: 10})
      expect(log.items.map((e) => [e.event, e.from, e.to])).toEqual([
        ['disconnected', 'direct', 'none'],
        ['upgraded_to_direct', 'relay', 'direct'],
        ['connected', 'none', 'relay'],
      ])
      // Telemetry: no audit entry, no netmap change.
      const entries = (await store.listAudit({tenantId, networkId: net.id}, {limit: 500})).items
      expect(entries.filter((e) => e.action.startsWith('connection'))).toEqual([])
      expect(await store.changesSince(net.id, 2)).toEqual({version: 2, nodeIds: []})
    })

    it('skips pairs whose node left the network, and drops their rows with the node', async () => {
      const net = await makeNetwork({joinPolicy: 'open', cidr: '10.75.0.0/24'})
      const x = (await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'x'}), ctx()))
        .nodeId
      const y = (await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'y'}), ctx()))
        .nodeId
      const [a, b] = [x, y].sort() as [string, string]
      const w: ConnectionWrite = {
        nodeA: a,
        nodeB: b,
        path: 'direct',
        latencyMs: null,
        endpointA: null,
        endpointB: null,
        event: {event: 'connected', from: 'none'},
      }
      expect(await writes.writeConnections(net.id, [w, {...w, nodeB: 'nd_gone'}], ctx().at)).toHaveLength(1)
      await writes.removeNode(b, ctx())
      expect(await store.allConnections(net.id)).toEqual([])
      // The log outlives the node; its name is then unknown.
      const [entry] = (await store.connectionLog(net.id, {nodeId: b}, {limit: 10})).items
      expect(entry?.b).toEqual({id: b, name: null})
      expect(await writes.writeConnections(net.id, [w], ctx().at)).toEqual([])
    })

    describe('path sides written by several replicas (migration 0008)', () => {
      const relay30: ConnectionSide = {path: 'relay', latencyMs: 30, endpoint: null}
      const direct5: ConnectionSide = {path: 'direct', latencyMs: 5, endpoint: '198.51.100.5:51820'}
      const t = (s: number) => new Date(Date.UTC(2026, 10, 22, 10, 0, s)).toISOString()
      const FAR = '2099-01-01T00:00:00.000Z'

      async function pairOf(cidr: string) {
        const net = await makeNetwork({joinPolicy: 'open', cidr})
        const reg = (name: string) =>
          writes.registerNode({kind: 'open', networkId: net.id}, newNode({name}), ctx())
        const [a, b] = [(await reg('a')).nodeId, (await reg('b')).nodeId].sort() as [string, string]
        const read = async () =>
          (await store.write((tx) => tx.lockConnections(net.id, [{nodeA: a, nodeB: b}], t(59))))[0]
        const events = async () =>
          (await store.connectionLog(net.id, {}, {limit: 50})).items
            .map((e) => [e.event, e.from, e.to])
            .reverse()
        return {net, a, b, read, events}
      }

      it('merges both stored sides whichever replica writes each, and logs only what the merge implies', async () => {
        const {net, a, b, read, events} = await pairOf('10.77.0.0/24')
        await holdPresence(a, 'r1', FAR)
        await holdPresence(b, 'r2', FAR)
        // r1 holds a's session, r2 holds b's.
        const first = await writes.writeConnectionSides(
          net.id,
          'r1',
          [{nodeA: a, nodeB: b, a: relay30}],
          t(1),
        )
        expect(first.logged.map((e) => [e.event, e.to, e.latencyMs])).toEqual([['connected', 'relay', 30]])
        expect(first.pairs).toEqual([{nodeA: a, nodeB: b, stored: true}])
        const second = await peer.writes.writeConnectionSides(
          net.id,
          'r2',
          [{nodeA: a, nodeB: b, b: direct5}],
          t(2),
        )
        expect(second.logged.map((e) => [e.event, e.from, e.to, e.latencyMs])).toEqual([
          ['upgraded_to_direct', 'relay', 'direct', 5],
        ])
        expect(await read()).toEqual({
          nodeA: a,
          nodeB: b,
          path: 'direct',
          latencyMs: 5,
          endpointA: null,
          endpointB: '198.51.100.5:51820',
          since: t(2),
          updatedAt: t(2),
          sideA: {...relay30, replica: 'r1', at: t(1)},
          sideB: {...direct5, replica: 'r2', at: t(2)},
          heldA: true,
          heldB: true,
        })
        // Each replica writing its side again, as often as it likes: nothing moves, nothing logged.
        for (let i = 0; i < 3; i++) {
          expect(
            (await writes.writeConnectionSides(net.id, 'r1', [{nodeA: a, nodeB: b, a: relay30}], t(3)))
              .logged,
          ).toEqual([])
          expect(
            (await peer.writes.writeConnectionSides(net.id, 'r2', [{nodeA: a, nodeB: b, b: direct5}], t(3)))
              .logged,
          ).toEqual([])
        }
        expect((await read())?.sideA?.at).toBe(t(1))
        // b's session closes on r2: a's side alone decides (relay).
        await peer.writes.writeConnectionSides(net.id, 'r2', [{nodeA: a, nodeB: b, b: null}], t(4))
        expect(await read()).toMatchObject({path: 'relay', latencyMs: 30, sideB: null, since: t(4)})
        // a's closes on r1 too: neither side reports, the stored state stays (rule 4).
        const last = await writes.writeConnectionSides(net.id, 'r1', [{nodeA: a, nodeB: b, a: null}], t(5))
        expect(last).toEqual({logged: [], pairs: [{nodeA: a, nodeB: b, stored: true}]})
        expect(await read()).toMatchObject({path: 'relay', sideA: null, sideB: null, since: t(4)})
        expect(await events()).toEqual([
          ['connected', 'none', 'relay'],
          ['upgraded_to_direct', 'relay', 'direct'],
          ['fell_back_to_relay', 'direct', 'relay'],
        ])
      })

      it('clears a side only where the replica wrote it, and a side whose replica no longer holds the node does not count', async () => {
        const {net, a, b, read, events} = await pairOf('10.78.0.0/24')
        await holdPresence(a, 'r1', t(30))
        await writes.writeConnectionSides(net.id, 'r1', [{nodeA: a, nodeB: b, a: direct5}], t(1))
        // An older session of a on r2 closes: r2 did not write a's side, so it stays.
        await peer.writes.writeConnectionSides(net.id, 'r2', [{nodeA: a, nodeB: b, a: null}], t(2))
        expect(await read()).toMatchObject({path: 'direct', sideA: {replica: 'r1'}})
        // r1 died: its presence row of a expired at t(30). b says it sees no handshake: a's stale
        // side no longer pins the pair.
        await holdPresence(b, 'r2', FAR)
        const w = await peer.writes.writeConnectionSides(
          net.id,
          'r2',
          [{nodeA: a, nodeB: b, b: {path: 'none', latencyMs: null, endpoint: null}}],
          t(40),
        )
        expect(w.logged.map((e) => e.event)).toEqual(['disconnected'])
        expect(w.pairs).toEqual([{nodeA: a, nodeB: b, stored: false}])
        expect(await read()).toBeUndefined()
        expect(await events()).toEqual([
          ['connected', 'none', 'direct'],
          ['disconnected', 'direct', 'none'],
        ])
      })

      it("takes a node's side over when the node reports through another replica, without an event", async () => {
        const {net, a, b, read} = await pairOf('10.79.0.0/24')
        await writes.writeConnectionSides(net.id, 'r1', [{nodeA: a, nodeB: b, a: direct5}], t(1))
        const moved = await peer.writes.writeConnectionSides(
          net.id,
          'r2',
          [{nodeA: a, nodeB: b, a: direct5}],
          t(2),
        )
        expect(moved.logged).toEqual([])
        expect(await read()).toMatchObject({
          path: 'direct',
          since: t(1),
          sideA: {...direct5, replica: 'r2', at: t(2)},
        })
        // The first replica's late close no longer touches it.
        await writes.writeConnectionSides(net.id, 'r1', [{nodeA: a, nodeB: b, a: null}], t(3))
        expect((await read())?.sideA?.replica).toBe('r2')
      })

      it('loses neither side when two replicas write the two sides of the same pairs at once', async () => {
        const net = await makeNetwork({joinPolicy: 'open', cidr: '10.81.0.0/24'})
        const ids: string[] = []
        for (let i = 0; i < 9; i++)
          ids.push(
            (await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: `c${i}`}), ctx()))
              .nodeId,
          )
        ids.sort()
        const pairs: {nodeA: string; nodeB: string}[] = []
        for (let i = 0; i < ids.length; i++)
          for (let j = i + 1; j < ids.length; j++) pairs.push({nodeA: ids[i]!, nodeB: ids[j]!})
        for (const id of ids) {
          await holdPresence(id, 'r1', FAR)
          await holdPresence(id, 'r2', FAR)
        }
        // Both replicas flush every pair in each round, in opposite orders: every transaction
        // waits on the other's pair locks at some point.
        for (let round = 0; round < 3; round++) {
          await Promise.all([
            writes.writeConnectionSides(
              net.id,
              'r1',
              pairs.map((p) => ({...p, a: relay30})),
              t(round),
            ),
            peer.writes.writeConnectionSides(
              net.id,
              'r2',
              [...pairs].reverse().map((p) => ({...p, b: direct5})),
              t(round),
            ),
          ])
        }
        const rows = await store.write((tx) => tx.lockConnections(net.id, pairs, t(59)))
        expect(rows).toHaveLength(pairs.length)
        for (const r of rows) {
          expect(r).toMatchObject({path: 'direct', latencyMs: 5, sideA: relay30, sideB: direct5})
        }
        // Per pair, the log is one of the two orders the merge allows, never a flap.
        const log = (await store.connectionLog(net.id, {}, {limit: 500})).items
        for (const p of pairs) {
          const mine = log
            .filter((e) => e.a.id === p.nodeA && e.b.id === p.nodeB)
            .map((e) => e.event)
            .reverse()
          expect([['connected'], ['connected', 'upgraded_to_direct']]).toContainEqual(mine)
        }
      })
    })

    it('keeps the newest CONNECTION_LOG_KEEP log entries of a network and pages them newest first', async () => {
      const net = await makeNetwork({joinPolicy: 'open', cidr: '10.76.0.0/24'})
      const x = (await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'x'}), ctx()))
        .nodeId
      const y = (await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'y'}), ctx()))
        .nodeId
      const [a, b] = [x, y].sort() as [string, string]
      const flip = (i: number): ConnectionWrite => ({
        nodeA: a,
        nodeB: b,
        path: i % 2 === 0 ? 'direct' : 'relay',
        latencyMs: i,
        endpointA: null,
        endpointB: null,
        event: {
          event: i % 2 === 0 ? 'upgraded_to_direct' : 'fell_back_to_relay',
          from: i % 2 === 0 ? 'relay' : 'direct',
        },
      })
      const total = CONNECTION_LOG_KEEP + 250
      for (let i = 0; i < total; i += 1000)
        await writes.writeConnections(
          net.id,
          Array.from({length: Math.min(1000, total - i)}, (_, j) => flip(i + j)),
          ctx().at,
        )
      const seen: number[] = []
      let cursor: string | undefined
      for (let i = 0; i < 30; i++) {
        const page = await store.connectionLog(net.id, {}, {limit: 500, cursor})
        seen.push(...page.items.map((e) => e.latencyMs as number))
        if (!page.nextCursor) break
        cursor = page.nextCursor
      }
      expect(seen).toHaveLength(CONNECTION_LOG_KEEP)
      expect(seen[0]).toBe(total - 1)
      expect(seen.at(-1)).toBe(total - CONNECTION_LOG_KEEP)
    })

    it('pages through a list exactly once with limit and cursor', async () => {
      const net = await makeNetwork({joinPolicy: 'open', cidr: '10.80.0.0/24'})
      const ids: string[] = []
      for (let i = 0; i < 7; i++) {
        ids.push(
          (await writes.registerNode({kind: 'open', networkId: net.id}, newNode({name: `n${i}`}), ctx()))
            .nodeId,
        )
      }
      const seen: string[] = []
      let cursor: string | undefined
      for (let i = 0; i < 10; i++) {
        const page = await store.listNodes(net.id, {}, {limit: 3, cursor})
        seen.push(...page.items.map((n) => n.id))
        if (!page.nextCursor) break
        cursor = page.nextCursor
      }
      expect(seen).toEqual(ids)
    })

    it('deletes a network with its nodes and reports each node as removed', async () => {
      const net = await makeNetwork({joinPolicy: 'open', cidr: '10.90.0.0/24'})
      const n = await writes.registerNode({kind: 'open', networkId: net.id}, newNode(), ctx())
      const changes = await writes.deleteNetwork(net.id, ctx())
      expect(changes.map((c) => [c.nodeId, c.kind])).toEqual([[n.nodeId, 'removed']])
      expect(await store.getNode(n.nodeId)).toBeUndefined()
      expect(await store.getNetwork(net.id)).toBeUndefined()
    })

    it("keeps relay keys hashed, pages them, revokes once and takes the revoked key's relays off the list", async () => {
      const k1 = await writes.createRelayKey(
        {
          id: uid('rk'),
          name: 'rack 4',
          region: 'eu',
          keyHash: 'h'.repeat(64),
          prefix: 'mrelay_abcde',
          createdBy: 'u_test',
        },
        ctx(),
        tenantId,
      )
      expect(k1).toEqual({
        id: k1.id,
        name: 'rack 4',
        region: 'eu',
        prefix: 'mrelay_abcde',
        createdAt: ctx().at,
        createdBy: 'u_test',
        revokedAt: null,
      })
      expect(k1).not.toHaveProperty('keyHash')
      const k2 = await peer.writes.createRelayKey(
        {
          id: uid('rk'),
          name: 'us',
          region: 'us',
          keyHash: 'g'.repeat(64),
          prefix: 'mrelay_fghij',
          createdBy: null,
        },
        ctx(),
        null,
      )
      // A hash is unique: a second key with it is refused, as every secret's.
      expect(
        await codeOf(
          writes.createRelayKey(
            {id: uid('rk'), name: 'dup', region: 'eu', keyHash: 'h'.repeat(64), prefix: 'x', createdBy: null},
            ctx(),
            null,
          ),
        ),
      ).toBe('WRITE_CONFLICT')
      expect((await store.relayKeyByHash('g'.repeat(64)))?.id).toBe(k2.id)
      expect(await store.relayKeyByHash('nope')).toBeUndefined()
      const first = await store.listRelayKeys({limit: 1})
      expect(first.items.map((k) => k.id)).toEqual([k1.id])
      const second = await store.listRelayKeys({limit: 1, cursor: first.nextCursor as string})
      expect(second.items.map((k) => k.id)).toEqual([k2.id])
      expect(second.nextCursor).toBeNull()

      const at = '2026-11-22T00:00:00.000Z'
      const later = '2026-11-22T00:00:15.000Z'
      expect(
        await writes.relayHeartbeat({
          url: 'https://r1.example',
          kind: 'standalone',
          region: 'eu',
          keyId: k1.id,
          connected: 2,
          at,
          expiresAt: later,
        }),
      ).toBe(true)
      await peer.writes.relayHeartbeat({
        url: 'https://r2.example',
        kind: 'standalone',
        region: 'us',
        keyId: k2.id,
        connected: 0,
        at,
        expiresAt: later,
      })
      const revoked = await writes.revokeRelayKey(k1.id, ctx({at: '2026-11-22T00:00:01.000Z'}), tenantId)
      expect(revoked.revokedAt).toBe('2026-11-22T00:00:01.000Z')
      await writes.revokeRelayKey(k1.id, ctx({at: '2026-11-22T00:00:09.000Z'}), tenantId)
      expect((await store.getRelayKey(k1.id))?.revokedAt).toBe('2026-11-22T00:00:01.000Z')
      expect((await peer.store.liveRelays(at)).map((r) => r.url)).toEqual(['https://r2.example'])
      expect(
        await codeOf(
          writes.relayHeartbeat({
            url: 'https://r1.example',
            kind: 'standalone',
            region: 'eu',
            keyId: k1.id,
            connected: 0,
            at,
            expiresAt: later,
          }),
        ),
      ).toBe('UNAUTHENTICATED')
      expect(await codeOf(writes.revokeRelayKey('rk_none', ctx(), tenantId))).toBe('NOT_FOUND')
      const audit = (await store.listAudit({tenantId}, {limit: 500})).items
        .filter((e) => e.targetId === k1.id)
        .map((e) => e.action)
      expect(audit.sort()).toEqual(['relaykey.create', 'relaykey.revoke', 'relaykey.revoke'])
    })

    it('lists a relay until its expiry from any store on the database, keeps first_seen, and sweeps it after', async () => {
      const k = await writes.createRelayKey(
        {
          id: uid('rk'),
          name: 'eu',
          region: 'eu',
          keyHash: 'e'.repeat(64),
          prefix: 'mrelay_',
          createdBy: null,
        },
        ctx(),
        null,
      )
      const t = (s: number) => new Date(Date.parse('2026-11-22T00:00:00.000Z') + s * 1000).toISOString()
      const beat = (w: Writes, url: string, s: number, kind: 'standalone' | 'builtin' = 'standalone') =>
        w.relayHeartbeat({
          url,
          kind,
          region: kind === 'builtin' ? 'default' : 'eu',
          keyId: kind === 'builtin' ? null : k.id,
          connected: s,
          at: t(s),
          expiresAt: t(s + 15),
        })
      expect(await beat(writes, 'https://r1', 0)).toBe(true)
      expect(await beat(peer.writes, 'https://r1', 5)).toBe(false)
      expect(await beat(peer.writes, 'http://ctl-2:8080', 5, 'builtin')).toBe(true)
      expect(await store.liveRelays(t(20))).toEqual([
        {
          url: 'http://ctl-2:8080',
          kind: 'builtin',
          region: 'default',
          keyId: null,
          connected: 5,
          firstSeen: t(5),
          lastSeen: t(5),
          expiresAt: t(20),
        },
        {
          url: 'https://r1',
          kind: 'standalone',
          region: 'eu',
          keyId: k.id,
          connected: 5,
          firstSeen: t(0),
          lastSeen: t(5),
          expiresAt: t(20),
        },
      ])
      // Past its expiry a relay is not listed, before any sweep...
      expect(await peer.store.liveRelays(t(21))).toEqual([])
      // ...and the sweep deletes what expired only.
      await beat(writes, 'https://r3', 10)
      expect(await writes.sweepRelays(t(21))).toBe(2)
      expect((await store.liveRelays(t(21))).map((r) => r.url)).toEqual(['https://r3'])
      expect(await peer.writes.leaveRelays('https://r3')).toBe(true)
      expect(await peer.writes.leaveRelays('https://r3')).toBe(false)
      expect(await store.liveRelays(t(21))).toEqual([])
    })

    it('keeps the first relay-mesh secret written, whichever store asks after', async () => {
      expect(await store.getSetting('relay_mesh_secret')).toBeUndefined()
      const a = await writes.relayMeshSecret('mmesh_first_secret_value', ctx().at)
      const b = await peer.writes.relayMeshSecret('mmesh_second_secret_value', ctx().at)
      expect([a, b]).toEqual(['mmesh_first_secret_value', 'mmesh_first_secret_value'])
      expect(await peer.store.getSetting('relay_mesh_secret')).toBe('mmesh_first_secret_value')
    })

    it('imports relay-keys.json keys once, by id and hash, with a system audit entry each', async () => {
      const keys = [
        {id: 'rk_file1', region: 'eu', hash: 'a'.repeat(64), createdAt: '2026-01-01T00:00:00.000Z'},
        {id: 'rk_file2', region: 'us', hash: 'b'.repeat(64), createdAt: '2026-01-02T00:00:00.000Z'},
      ]
      expect(await writes.importRelayKeys(keys, ctx({actor: 'system', actorName: 'system'}))).toEqual([
        'rk_file1',
        'rk_file2',
      ])
      expect(await peer.writes.importRelayKeys(keys, ctx())).toEqual([])
      expect(await store.getRelayKey('rk_file1')).toMatchObject({
        region: 'eu',
        keyHash: 'a'.repeat(64),
        createdAt: '2026-01-01T00:00:00.000Z',
        createdBy: null,
        revokedAt: null,
      })
    })

    it('finds a node by its credential hash and a token by its hash only', async () => {
      const net = await makeNetwork({joinPolicy: 'open', cidr: '10.91.0.0/24'})
      const n = await writes.registerNode(
        {kind: 'open', networkId: net.id},
        newNode({credentialHash: 'abc123'}),
        ctx(),
      )
      expect((await store.getNodeByCredential('abc123'))?.id).toBe(n.nodeId)
      expect(await store.getNodeByCredential('abc124')).toBeUndefined()
      const user = await store.getUserByUsername('boss')
      await writes.createToken(
        {id: 'tok1', hash: 'h1', userId: user!.id, expiresAt: '2030-01-01T00:00:00.000Z'},
        ctx(),
      )
      expect(await store.getToken('h1')).toMatchObject({userId: user!.id})
      await writes.deleteToken('h1', ctx())
      expect(await store.getToken('h1')).toBeUndefined()
    })

    describe('two writers at once (as two controller replicas)', () => {
      /** Runs every call at once, alternating between the two writers, and settles them all. */
      const race = <T>(n: number, call: (w: Writes, i: number) => Promise<T>) =>
        Promise.allSettled(Array.from({length: n}, (_, i) => call(i % 2 === 0 ? writes : peer.writes, i)))
      const codes = (results: PromiseSettledResult<unknown>[]) =>
        results.map((r) =>
          r.status === 'fulfilled' ? 'ok' : isMeshError(r.reason) ? r.reason.code : String(r.reason),
        )

      it('gives every node of a registration race its own name and address', async () => {
        const net = await makeNetwork({joinPolicy: 'open', cidr: '10.90.0.0/24'})
        const results = await race(12, (w) =>
          w.registerNode({kind: 'open', networkId: net.id}, newNode({name: 'web'}), ctx()),
        )
        expect(codes(results)).toEqual(Array(12).fill('ok'))
        const nodes = await store.allNodes(net.id)
        expect(new Set(nodes.map((n) => n.name)).size).toBe(12)
        expect(new Set(nodes.map((n) => n.address)).size).toBe(12)
        expect(nodes.map((n) => n.name)).toContain('web-12')
        // Every registration bumped the version once: 12 distinct versions, ending at 12.
        const versions = results.map((r) => (r.status === 'fulfilled' ? r.value.version : 0))
        expect(new Set(versions).size).toBe(12)
        expect(await store.netmapVersion(net.id)).toBe(12)
      })

      it('lets a single-use invite and a single-use auth key in once, however many race for it', async () => {
        const net = await makeNetwork({joinPolicy: 'invite', cidr: '10.91.0.0/24'})
        const codeHash = uid('code')
        await writes.createInvite(
          {
            id: uid('iv'),
            networkId: net.id,
            codeHash,
            role: 'member',
            maxUses: 1,
            expiresAt: '2030-01-01T00:00:00.000Z',
            createdBy: 'u_test',
          },
          ctx(),
        )
        const byInvite = codes(
          await race(6, (w) => w.registerNode({kind: 'invite', codeHash}, newNode({name: 'inv'}), ctx())),
        )
        expect(byInvite.filter((c) => c === 'ok')).toHaveLength(1)
        expect(byInvite.filter((c) => c === 'INVITE_USED_UP')).toHaveLength(5)
        const key = await makeKey(net.id, {reusable: false})
        const byKey = codes(
          await race(6, (w) =>
            w.registerNode({kind: 'authkey', keyHash: key.keyHash}, newNode({name: 'key'}), ctx()),
          ),
        )
        expect(byKey.filter((c) => c === 'ok')).toHaveLength(1)
        expect(byKey.filter((c) => c === 'AUTHKEY_USED')).toHaveLength(5)
        expect(await store.allNodes(net.id)).toHaveLength(2)
      })

      it('keeps max nodes under a registration race', async () => {
        const net = await makeNetwork({joinPolicy: 'open', cidr: '10.92.0.0/24', maxNodes: 3})
        const results = codes(
          await race(8, (w) => w.registerNode({kind: 'open', networkId: net.id}, newNode(), ctx())),
        )
        expect(results.filter((c) => c === 'ok')).toHaveLength(3)
        expect(results.filter((c) => c === 'NETWORK_MAX_NODES')).toHaveLength(5)
        expect(await store.allNodes(net.id)).toHaveLength(3)
      })

      it('lets one of two overlapping networks, or two of one name, in', async () => {
        const overlap = codes(
          await race(2, (w, i) =>
            w.createNetwork(
              {
                id: uid('n'),
                tenantId,
                name: `race-${i}`,
                cidr: i === 0 ? '10.93.0.0/16' : '10.93.7.0/24',
                description: '',
                joinPolicy: 'open',
                maxNodes: null,
              },
              ctx(),
            ),
          ),
        )
        expect(overlap.sort()).toEqual(['CIDR_OVERLAP', 'ok'])
        const sameName = codes(
          await race(2, (w, i) =>
            w.createNetwork(
              {
                id: uid('n'),
                tenantId,
                name: 'twin',
                cidr: `10.94.${i}.0/24`,
                description: '',
                joinPolicy: 'open',
                maxNodes: null,
              },
              ctx(),
            ),
          ),
        )
        expect(sameName.sort()).toEqual(['NETWORK_NAME_TAKEN', 'ok'])
      })

      it('lets one of two users of one name in, and reports the other as USERNAME_TAKEN', async () => {
        const results = codes(
          await race(2, (w) =>
            w.createUser(
              {id: uid('u'), tenantId, username: 'carol', passwordHash: 'x', role: 'member'},
              ctx(),
            ),
          ),
        )
        expect(results.sort()).toEqual(['USERNAME_TAKEN', 'ok'])
      })

      it('rolls back everything a failed write did, audit entry included', async () => {
        const net = await makeNetwork({joinPolicy: 'open', cidr: '10.95.0.0/24'})
        const auditBefore = (await store.listAudit({tenantId}, {limit: 500})).items.length
        await expect(
          store.write(async (tx) => {
            await appendAudit(tx, ctx(), {
              tenantId,
              action: 'test.half',
              targetType: 'network',
              targetId: net.id,
              networkId: net.id,
            })
            await tx.bumpNetmap(net.id, 'nd_none', 'changed')
            throw new Error('fails after writing')
          }),
        ).rejects.toThrow('fails after writing')
        expect((await store.listAudit({tenantId}, {limit: 500})).items).toHaveLength(auditBefore)
        expect(await store.netmapVersion(net.id)).toBe(0)
        // The store still writes after the failure.
        await writes.registerNode({kind: 'open', networkId: net.id}, newNode(), ctx())
        expect(await peer.store.netmapVersion(net.id)).toBe(1)
      })
    })

    describe('the audit log as a hash chain (migration 0011)', () => {
      const invite = (w: Writes, networkId: string) =>
        w.createInvite(
          {
            id: uid('iv'),
            networkId,
            codeHash: uid('ch'),
            role: 'member',
            maxUses: 1,
            expiresAt: '2030-01-01T00:00:00.000Z',
            createdBy: 'u_test',
          },
          ctx(),
        )

      it('links every audited write of a tenant into one chain that verifies', async () => {
        const net = await makeNetwork()
        for (let i = 0; i < 3; i++) await invite(writes, net.id)
        const v = await verifyAuditChain(store, tenantId)
        // tenant.create, network.create and three invite.create
        expect(v).toMatchObject({ok: true, checked: 5, unchained: 0})
        const links = await store.auditLinks(tenantId, 0, 100)
        expect(links.map((l) => l.chainSeq)).toEqual([1, 2, 3, 4, 5])
        expect(links[0]!.prevHash).toBe('')
        for (let i = 1; i < links.length; i++) expect(links[i]!.prevHash).toBe(links[i - 1]!.hash)
        expect(v.head).toEqual({id: links[4]!.id, seq: 5, hash: links[4]!.hash})
        // Paging does not change the verdict.
        expect(await verifyAuditChain(store, tenantId, {pageSize: 2})).toEqual(v)
      })

      it('lists links after a number oldest first, page by page, for following the log', async () => {
        const net = await makeNetwork()
        for (let i = 0; i < 3; i++) await invite(writes, net.id)
        const first = await store.listAudit({tenantId, afterSeq: 2}, {limit: 2})
        expect(first.items.map((e) => [e.seq, e.action])).toEqual([
          [3, 'invite.create'],
          [4, 'invite.create'],
        ])
        expect(first.nextCursor).not.toBeNull()
        const second = await store.listAudit({tenantId, afterSeq: 2}, {limit: 2, cursor: first.nextCursor!})
        expect(second.items.map((e) => e.seq)).toEqual([5])
        expect(second.nextCursor).toBeNull()
        // Filters apply as in the newest-first listing.
        const byNetwork = await store.listAudit({tenantId, afterSeq: 0, networkId: net.id}, {limit: 10})
        expect(byNetwork.items.map((e) => e.seq)).toEqual([2, 3, 4, 5])
        // The newest-first listing carries the numbers too.
        expect((await store.listAudit({tenantId}, {limit: 1})).items[0]?.seq).toBe(5)
      })

      it('keeps one chain per tenant', async () => {
        const other = await writes.createTenantWithOwner(
          {id: uid('t'), name: 'globex'},
          {id: uid('u'), username: 'hank', passwordHash: 'x', superuser: false},
          ctx(),
        )
        await makeNetwork()
        expect(await verifyAuditChain(store, tenantId)).toMatchObject({ok: true, checked: 2})
        expect(await verifyAuditChain(store, other.tenant.id)).toMatchObject({ok: true, checked: 1})
      })

      it('stays one unforked chain when two writers append at once', async () => {
        const net = await makeNetwork()
        await Promise.all(
          Array.from({length: 16}, (_, i) => invite(i % 2 === 0 ? writes : peer.writes, net.id)),
        )
        const v = await verifyAuditChain(peer.store, tenantId)
        expect(v).toMatchObject({ok: true, checked: 18})
      })
    })

    describe('sessions, refresh tokens and MFA (migration 0014)', () => {
      const T0 = '2026-11-22T00:00:00.000Z'
      const later = (ms: number) => new Date(Date.parse(T0) + ms).toISOString()
      const DAY = 86_400_000
      let userId: string

      beforeEach(async () => {
        userId = (await store.getUserByUsername('boss'))!.id
      })

      /** A session with its first pair; returns the refresh token's hash and the access token's. */
      const startSession = async (w: Writes = writes, over: {sourceAddress?: string} = {}) => {
        const sessionId = uid('ses')
        const access = {id: uid('tok'), hash: uid('ah'), expiresAt: later(15 * 60_000)}
        const refresh = {hash: uid('rh'), expiresAt: later(30 * DAY)}
        await w.startSession(
          {sessionId, userId, access, refresh},
          ctx({sourceAddress: over.sourceAddress ?? '10.0.0.1'}),
        )
        return {sessionId, access, refresh}
      }
      const refreshReq = (presented: string) => ({
        presented,
        access: {id: uid('tok'), hash: uid('ah'), expiresAt: later(60_000 + 15 * 60_000)},
        refresh: {hash: uid('rh'), expiresAt: later(60_000 + 30 * DAY)},
        graceMs: 10_000,
        sweepBefore: T0,
      })

      it('starts a session with its tokens, lists it while live, and audits the login once', async () => {
        const before = (await store.listAudit({tenantId}, {limit: 500})).items.length
        const s = await startSession()
        expect(await store.getToken(s.access.hash)).toMatchObject({userId, sessionId: s.sessionId})
        expect(await store.getSession(s.sessionId)).toMatchObject({
          userId,
          tenantId,
          createdAt: T0,
          lastUsedAt: T0,
          expiresAt: s.refresh.expiresAt,
          sourceAddress: '10.0.0.1',
          revokedAt: null,
        })
        expect((await store.listSessions(userId, T0)).map((x) => x.id)).toEqual([s.sessionId])
        expect(await store.listSessions(userId, later(31 * DAY))).toEqual([])
        const audit = (await store.listAudit({tenantId}, {limit: 500})).items
        expect(audit).toHaveLength(before + 1)
        expect(audit[0]).toMatchObject({action: 'user.login', targetType: 'session', targetId: s.sessionId})
      })

      it('rotates the refresh token: a new pair in the same family, the session slides on, no audit entry', async () => {
        const s = await startSession()
        const before = (await store.listAudit({tenantId}, {limit: 500})).items.length
        const req = refreshReq(s.refresh.hash)
        const out = await writes.refreshSession(req, ctx({at: later(60_000), sourceAddress: '10.0.0.2'}))
        expect(out).toMatchObject({kind: 'refreshed', session: {id: s.sessionId}})
        expect(await store.getToken(req.access.hash)).toMatchObject({sessionId: s.sessionId})
        expect(await store.getSession(s.sessionId)).toMatchObject({
          lastUsedAt: later(60_000),
          expiresAt: req.refresh.expiresAt,
          sourceAddress: '10.0.0.2',
        })
        // The old access token still works until its own expiry; the old refresh token is retired.
        expect(await store.getToken(s.access.hash)).toBeDefined()
        expect((await store.listAudit({tenantId}, {limit: 500})).items).toHaveLength(before)
        const next = await writes.refreshSession(refreshReq(req.refresh.hash), ctx({at: later(120_000)}))
        expect(next.kind).toBe('refreshed')
      })

      it('revokes the whole family when a retired refresh token is replayed after the grace, and audits it', async () => {
        const s = await startSession()
        const r1 = refreshReq(s.refresh.hash)
        await writes.refreshSession(r1, ctx({at: later(60_000)}))
        const replay = await writes.refreshSession(refreshReq(s.refresh.hash), ctx({at: later(120_000)}))
        expect(replay).toEqual({kind: 'reused', sessionId: s.sessionId})
        expect(await store.getToken(s.access.hash)).toBeUndefined()
        expect(await store.getToken(r1.access.hash)).toBeUndefined()
        expect(await store.getSession(s.sessionId)).toMatchObject({revokedReason: 'reuse'})
        expect(await store.listSessions(userId, T0)).toEqual([])
        expect(
          await codeOf(writes.refreshSession(refreshReq(r1.refresh.hash), ctx({at: later(180_000)}))),
        ).toBe('REFRESH_TOKEN_INVALID')
        const audit = (await store.listAudit({tenantId}, {limit: 500})).items
        expect(audit[0]).toMatchObject({action: 'session.reuse_detected', targetId: s.sessionId})
      })

      it('refuses unknown and expired refresh tokens without revoking anything', async () => {
        const s = await startSession()
        expect(await codeOf(writes.refreshSession(refreshReq('nope'), ctx()))).toBe('REFRESH_TOKEN_INVALID')
        expect(
          await codeOf(writes.refreshSession(refreshReq(s.refresh.hash), ctx({at: later(31 * DAY)}))),
        ).toBe('REFRESH_TOKEN_INVALID')
        expect(await store.getSession(s.sessionId)).toMatchObject({revokedAt: null})
      })

      it('revokes a session once: its access tokens go, a second revoke writes nothing', async () => {
        const s = await startSession()
        const before = (await store.listAudit({tenantId}, {limit: 500})).items.length
        await writes.revokeSession(s.sessionId, 'revoked', ctx())
        await writes.revokeSession(s.sessionId, 'revoked', ctx())
        expect(await store.getToken(s.access.hash)).toBeUndefined()
        expect(await store.getSession(s.sessionId)).toMatchObject({revokedReason: 'revoked'})
        expect((await store.listAudit({tenantId}, {limit: 500})).items).toHaveLength(before + 1)
        expect(await codeOf(writes.revokeSession('ses_none', 'revoked', ctx()))).toBe('NOT_FOUND')
      })

      it('sweeps expired sessions with their tokens at the next login, and keeps tokens from before 0014 until their expiry', async () => {
        const old = await startSession()
        await writes.createToken({id: uid('tok'), hash: 'legacy', userId, expiresAt: later(40 * DAY)}, ctx())
        expect(await store.getToken('legacy')).toMatchObject({sessionId: null})
        await writes.startSession(
          {
            sessionId: uid('ses'),
            userId,
            access: {id: uid('tok'), hash: uid('ah'), expiresAt: later(31 * DAY)},
            refresh: {hash: uid('rh'), expiresAt: later(61 * DAY)},
          },
          ctx({at: later(31 * DAY)}),
        )
        expect(await store.getSession(old.sessionId)).toBeUndefined()
        expect(await store.getToken(old.access.hash)).toBeUndefined()
        expect(await store.getToken('legacy')).toBeDefined()
      })

      it('lets exactly one of two replicas exchange the same refresh token at once', async () => {
        for (let round = 0; round < 4; round++) {
          const s = await startSession()
          // Same client address, inside the grace: the loser is told it raced, nothing is revoked.
          const results = await Promise.allSettled([
            writes.refreshSession(refreshReq(s.refresh.hash), ctx({at: later(60_000)})),
            peer.writes.refreshSession(refreshReq(s.refresh.hash), ctx({at: later(60_000)})),
          ])
          const outcome = results.map((r) =>
            r.status === 'fulfilled'
              ? r.value.kind
              : isMeshError(r.reason)
                ? r.reason.code
                : String(r.reason),
          )
          expect(outcome.sort()).toEqual(['REFRESH_TOKEN_RACED', 'refreshed'])
          expect(await store.getSession(s.sessionId)).toMatchObject({revokedAt: null})
        }
        // Different client addresses: the loser is a replay, and the family is revoked.
        const s = await startSession()
        const results = await Promise.allSettled([
          writes.refreshSession(
            refreshReq(s.refresh.hash),
            ctx({at: later(60_000), sourceAddress: '10.0.0.1'}),
          ),
          peer.writes.refreshSession(
            refreshReq(s.refresh.hash),
            ctx({at: later(60_000), sourceAddress: '10.9.9.9'}),
          ),
        ])
        const kinds = results.map((r) => (r.status === 'fulfilled' ? r.value.kind : String(r.reason))).sort()
        expect(kinds).toEqual(['refreshed', 'reused'])
        expect(await store.getSession(s.sessionId)).toMatchObject({revokedReason: 'reuse'})
      })

      it('keeps MFA pending until confirmed, accepts each time step once, and each recovery code once', async () => {
        await writes.beginMfa(userId, 'SECRETA', ctx())
        expect(await store.getMfa(userId)).toMatchObject({secret: 'SECRETA', enabledAt: null, lastStep: null})
        // A second begin replaces the pending secret.
        await writes.beginMfa(userId, 'SECRETB', ctx())
        expect(await codeOf(writes.confirmMfa(userId, {secret: 'SECRETA', step: 100}, [], ctx()))).toBe(
          'MFA_CODE_INVALID',
        )
        await writes.confirmMfa(userId, {secret: 'SECRETB', step: 100}, ['rc1', 'rc2'], ctx())
        expect(await store.getMfa(userId)).toMatchObject({enabledAt: T0, lastStep: 100})
        expect(await codeOf(writes.beginMfa(userId, 'SECRETC', ctx()))).toBe('MFA_ALREADY_ENABLED')
        const totp = (step: number) =>
          writes.useSecondFactor(userId, {kind: 'totp', secret: 'SECRETB', step}, ctx())
        expect(await totp(100)).toBe(false)
        expect(await totp(99)).toBe(false)
        expect(await totp(101)).toBe(true)
        expect(await totp(101)).toBe(false)
        expect(await writes.useSecondFactor(userId, {kind: 'totp', secret: 'OTHER', step: 200}, ctx())).toBe(
          false,
        )
        const rc = (hash: string) => writes.useSecondFactor(userId, {kind: 'recovery', hash}, ctx())
        expect(await rc('rc1')).toBe(true)
        expect(await rc('rc1')).toBe(false)
        expect(await rc('nope')).toBe(false)
        // Two replicas with the same next code: one gets in.
        const both = await Promise.all([
          writes.useSecondFactor(userId, {kind: 'totp', secret: 'SECRETB', step: 102}, ctx()),
          peer.writes.useSecondFactor(userId, {kind: 'totp', secret: 'SECRETB', step: 102}, ctx()),
        ])
        expect(both.filter(Boolean)).toHaveLength(1)
        await writes.disableMfa(userId, {kind: 'recovery', hash: 'rc2'}, ctx())
        expect(await store.getMfa(userId)).toBeUndefined()
        expect(await codeOf(writes.disableMfa(userId, {kind: 'recovery', hash: 'rc2'}, ctx()))).toBe(
          'MFA_NOT_ENABLED',
        )
        const actions = (await store.listAudit({tenantId}, {limit: 500})).items.map((e) => e.action)
        expect(actions.filter((a) => a === 'user.mfa_enable' || a === 'user.mfa_disable')).toEqual([
          'user.mfa_disable',
          'user.mfa_enable',
        ])
      })

      it('deletes sessions and MFA with their user', async () => {
        const {id} = await writes.createUser(
          {id: uid('u'), tenantId, username: uid('gone').toLowerCase(), passwordHash: 'x', role: 'member'},
          ctx(),
        )
        const sessionId = uid('ses')
        await writes.startSession(
          {
            sessionId,
            userId: id,
            access: {id: uid('tok'), hash: 'gone-ah', expiresAt: later(60_000)},
            refresh: {hash: 'gone-rh', expiresAt: later(DAY)},
          },
          ctx(),
        )
        await writes.beginMfa(id, 'S', ctx())
        await writes.deleteUser(id, ctx())
        expect(await store.getSession(sessionId)).toBeUndefined()
        expect(await store.getToken('gone-ah')).toBeUndefined()
        expect(await store.getMfa(id)).toBeUndefined()
      })

      it('seals plain MFA secrets at start in one transaction, once, and refuses secrets of another key (migration 0019)', async () => {
        /** A stand-in for the secrets key (auth/secrets-key.ts): the sealing itself is not the store's. */
        const sealer = (keyId: string) => ({
          keyId,
          sealedWith: (stored: string) => /^v1:([^:]+):/.exec(stored)?.[1],
          seal: (user: string, plain: string) => `v1:${keyId}:${user}:${plain}`,
        })
        const newUser = async () =>
          (
            await writes.createUser(
              {id: uid('u'), tenantId, username: uid('m').toLowerCase(), passwordHash: 'x', role: 'member'},
              ctx(),
            )
          ).id
        const [a, b, c] = [await newUser(), await newUser(), await newUser()]
        await writes.beginMfa(a, 'PLAINA', ctx())
        await writes.beginMfa(b, 'PLAINB', ctx())
        await writes.confirmMfa(b, {secret: 'PLAINB', step: 7}, ['h'], ctx())
        expect(await writes.sealMfaSecrets(undefined)).toEqual({total: 2, sealed: 0, plain: 2, sealedNow: 0})
        expect((await store.getMfa(a))?.secret).toBe('PLAINA')

        expect(await writes.sealMfaSecrets(sealer('k1'))).toEqual({
          total: 2,
          sealed: 0,
          plain: 2,
          sealedNow: 2,
        })
        expect(await store.getMfa(a)).toMatchObject({secret: `v1:k1:${a}:PLAINA`, enabledAt: null})
        expect(await store.getMfa(b)).toMatchObject({secret: `v1:k1:${b}:PLAINB`, enabledAt: T0, lastStep: 7})
        expect(await writes.sealMfaSecrets(sealer('k1'))).toEqual({
          total: 2,
          sealed: 2,
          plain: 0,
          sealedNow: 0,
        })

        // Another key: refused, and the plain row of c is left as it was (one transaction).
        await writes.beginMfa(c, 'PLAINC', ctx())
        expect(await codeOf(writes.sealMfaSecrets(sealer('k2')))).toBe('SECRETS_KEY_MISMATCH')
        expect((await store.getMfa(c))?.secret).toBe('PLAINC')

        // Only a row still holding what was read is changed (a replica that changed it wins).
        expect(await store.write((tx) => tx.replaceMfaSecret(c, 'STALE', 'X'))).toBe(false)
        expect(await peer.store.write((tx) => tx.replaceMfaSecret(c, 'PLAINC', 'Y'))).toBe(true)
        expect((await store.getMfa(c))?.secret).toBe('Y')
        expect((await store.write((tx) => tx.listMfa())).map((r) => r.userId).sort()).toEqual(
          [a, b, c].sort(),
        )
      })
    })

    describe('user invites, the moderator role and deleting a user with nodes (migration 0015)', () => {
      const T0 = '2026-11-22T00:00:00.000Z'
      const makeUserInvite = (
        over: {maxUses?: number | null; expiresAt?: string; role?: 'moderator' | 'member'} = {},
      ) => {
        const codeHash = uid('uch')
        return writes
          .createUserInvite(
            {
              id: uid('uiv'),
              tenantId,
              codeHash,
              role: over.role ?? 'moderator',
              maxUses: over.maxUses === undefined ? 2 : over.maxUses,
              expiresAt: over.expiresAt ?? '2030-01-01T00:00:00.000Z',
              createdBy: 'u_test',
            },
            ctx(),
          )
          .then((inv) => ({...inv, codeHash}))
      }
      const accept = (w: Writes, codeHash: string, username = uid('p').toLowerCase()) =>
        w.acceptUserInvite(
          codeHash,
          {id: uid('u'), username, identity: {kind: 'password', passwordHash: 'x'}},
          ctx(),
        )

      it('stores a user invite by its code hash, makes accounts with its role until its uses run out, and lists it', async () => {
        const inv = await makeUserInvite()
        expect(inv).toMatchObject({
          tenantId,
          role: 'moderator',
          maxUses: 2,
          uses: 0,
          revokedAt: null,
          createdAt: T0,
        })
        const made = await accept(writes, inv.codeHash, 'mo-one')
        expect(made).toMatchObject({tenantId, username: 'mo-one', role: 'moderator', superuser: false})
        expect((await store.getUserByUsername('mo-one'))?.role).toBe('moderator')
        // A taken name spends no use.
        expect(await codeOf(accept(writes, inv.codeHash, 'mo-one'))).toBe('USERNAME_TAKEN')
        expect((await store.getUserInvite(inv.id))?.uses).toBe(1)
        await accept(writes, inv.codeHash)
        expect(await codeOf(accept(writes, inv.codeHash))).toBe('INVITE_USED_UP')
        expect(await codeOf(accept(writes, 'no-such-hash'))).toBe('INVITE_INVALID')
        expect((await store.userInviteByCode(inv.codeHash))?.id).toBe(inv.id)
        expect(await store.userInviteByCode('no-such-hash')).toBeUndefined()
        const listed = await store.listUserInvites(tenantId, {limit: 10})
        expect(listed.items.map((i) => [i.id, i.uses])).toEqual([[inv.id, 2]])
        const actions = (await store.listAudit({tenantId}, {limit: 50})).items.map((e) => e.action)
        expect(actions.filter((a) => a.startsWith('userinvite.') || a === 'user.signup')).toEqual([
          'user.signup',
          'user.signup',
          'userinvite.create',
        ])
      })

      it('refuses a revoked or expired user invite, and revoking twice keeps the first time', async () => {
        const inv = await makeUserInvite({maxUses: null})
        await writes.revokeUserInvite(inv.id, ctx())
        await writes.revokeUserInvite(inv.id, ctx({at: '2027-01-01T00:00:00.000Z'}))
        expect((await store.getUserInvite(inv.id))?.revokedAt).toBe(T0)
        expect(await codeOf(accept(writes, inv.codeHash))).toBe('INVITE_REVOKED')
        const old = await makeUserInvite({expiresAt: T0})
        expect(await codeOf(accept(writes, old.codeHash))).toBe('INVITE_EXPIRED')
        expect(await store.getUserInvite('uiv_none')).toBeUndefined()
      })

      it('lets exactly one of two replicas take the last use of a user invite', async () => {
        const inv = await makeUserInvite({maxUses: 1})
        const both = await Promise.allSettled([
          accept(writes, inv.codeHash),
          accept(peer.writes, inv.codeHash),
        ])
        expect(both.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
        const lost = both.find((r) => r.status === 'rejected') as PromiseRejectedResult
        expect(isMeshError(lost.reason) && lost.reason.code).toBe('INVITE_USED_UP')
        expect((await store.getUserInvite(inv.id))?.uses).toBe(1)
      })

      it('renames a user, keeping the name unique, and audits it', async () => {
        const u = await writes.createUser(
          {id: uid('u'), tenantId, username: 'before-name', passwordHash: 'x', role: 'member'},
          ctx(),
        )
        expect((await writes.renameUser(u.id, 'after-name', ctx())).username).toBe('after-name')
        expect((await store.getUserByUsername('after-name'))?.id).toBe(u.id)
        expect(await store.getUserByUsername('before-name')).toBeUndefined()
        expect(await codeOf(writes.renameUser(u.id, 'boss', ctx()))).toBe('USERNAME_TAKEN')
        // The UNIQUE constraint answers the same when the check is skipped (a racing writer).
        expect(await codeOf(store.write((tx) => tx.setUsername(u.id, 'boss')))).toBe('USERNAME_TAKEN')
        const entry = (await store.listAudit({tenantId}, {limit: 5})).items.find(
          (e) => e.action === 'user.rename',
        )
        expect(entry?.detail).toEqual({username: 'after-name', previousUsername: 'before-name'})
      })

      it('stores the moderator role on users, network members and device invites', async () => {
        const u = await writes.createUser(
          {id: uid('u'), tenantId, username: uid('mod').toLowerCase(), passwordHash: 'x', role: 'moderator'},
          ctx(),
        )
        expect((await store.getUser(u.id))?.role).toBe('moderator')
        const net = await makeNetwork()
        await writes.setMember(net.id, u.id, 'moderator', ctx())
        expect(await store.getMemberRole(net.id, u.id)).toBe('moderator')
        const inv = await writes.createInvite(
          {
            id: uid('iv'),
            networkId: net.id,
            codeHash: uid('ich'),
            role: 'moderator',
            maxUses: 1,
            expiresAt: '2030-01-01T00:00:00.000Z',
            createdBy: u.id,
          },
          ctx(),
        )
        expect(inv.role).toBe('moderator')
      })

      it('refuses to delete a user who owns nodes unless told what to do with them; removes or reassigns them as nodes changes', async () => {
        const net = await makeNetwork({joinPolicy: 'open'})
        const mk = async () =>
          (
            await writes.createUser(
              {id: uid('u'), tenantId, username: uid('own').toLowerCase(), passwordHash: 'x', role: 'member'},
              ctx(),
            )
          ).id
        const [alice, bob, carol] = [await mk(), await mk(), await mk()]
        const reg = (userId: string) =>
          writes.registerNode({kind: 'open', networkId: net.id, userId}, newNode({name: 'n'}), ctx())
        const a1 = (await reg(alice)).nodeId
        const a2 = (await reg(alice)).nodeId
        const b1 = (await reg(bob)).nodeId
        expect((await store.getNode(a1))?.ownerId).toBe(alice)
        expect(await codeOf(writes.deleteUser(alice, ctx()))).toBe('USER_HAS_NODES')
        expect(await store.getUser(alice)).toBeDefined()
        expect(await codeOf(writes.deleteUser(alice, ctx(), {nodes: 'reassign', to: alice}))).toBe(
          'VALIDATION_FAILED',
        )
        const v0 = await store.netmapVersion(net.id)
        const moved = await writes.deleteUser(alice, ctx(), {nodes: 'reassign', to: carol})
        expect(moved).toMatchObject({removed: [], reassigned: [a1, a2]})
        expect(moved.changes.map((c) => [c.nodeId, c.kind])).toEqual([
          [a1, 'changed'],
          [a2, 'changed'],
        ])
        expect((await store.getNode(a1))?.ownerId).toBe(carol)
        expect(await store.getUser(alice)).toBeUndefined()
        expect(await store.netmapVersion(net.id)).toBe(v0 + 2)
        const gone = await writes.deleteUser(bob, ctx(), {nodes: 'remove'})
        expect(gone).toMatchObject({removed: [b1], reassigned: []})
        expect(gone.changes.map((c) => [c.nodeId, c.kind])).toEqual([[b1, 'removed']])
        expect(await store.getNode(b1)).toBeUndefined()
        expect(await store.changesSince(net.id, v0)).toEqual({version: v0 + 3, nodeIds: [a1, a2, b1]})
        const actions = (await store.listAudit({tenantId}, {limit: 50})).items.map((e) => e.action)
        expect(actions.slice(0, 5)).toEqual([
          'user.delete',
          'node.remove',
          'user.delete',
          'node.reassign',
          'node.reassign',
        ])
      })
    })

    describe('OIDC identities and logins in progress (migration 0017)', () => {
      const T0 = '2026-11-22T00:00:00.000Z'
      const later = (ms: number) => new Date(Date.parse(T0) + ms).toISOString()
      const login = (over: Partial<OidcLogin> = {}): OidcLogin => ({
        provider: 'corp',
        issuer: 'https://idp.example',
        subject: 'sub-1',
        email: 'ann@example.test',
        groups: ['eng'],
        usernames: ['ann'],
        tenant: 'acme',
        mappedRole: undefined,
        defaultRole: 'member',
        newUserId: uid('u'),
        passwordHash: '!oidc',
        ...over,
      })
      const session = () => ({
        sessionId: uid('ses'),
        access: {id: uid('tok'), hash: uid('ah'), expiresAt: later(15 * 60_000)},
        refresh: {hash: uid('rh'), expiresAt: later(86_400_000)},
      })
      const base = {sourceAddress: '10.0.0.1', requestId: 'r', at: T0}

      it('creates the user of a new identity, finds it by issuer + subject later, and keeps the groups of the last login', async () => {
        const first = await writes.oidcLogin(login(), session(), base)
        expect(first).toMatchObject({created: true, user: {username: 'ann', role: 'member', tenantId}})
        const again = await writes.oidcLogin(
          login({groups: ['ops'], mappedRole: 'admin', usernames: ['other']}),
          session(),
          {...base, at: later(60_000)},
        )
        expect(again).toMatchObject({
          created: false,
          user: {id: first.user.id, username: 'ann', role: 'admin'},
        })
        expect(await store.identitiesOf(first.user.id)).toEqual([
          {
            issuer: 'https://idp.example',
            subject: 'sub-1',
            userId: first.user.id,
            provider: 'corp',
            email: 'ann@example.test',
            groups: ['ops'],
            createdAt: T0,
            lastLoginAt: later(60_000),
          },
        ])
        // Another subject with the same preferred name gets a free one; another issuer is another identity.
        const other = await writes.oidcLogin(login({issuer: 'https://other.example'}), session(), base)
        expect(other).toMatchObject({created: true, user: {username: 'ann-2'}})
        const actions = (await store.listAudit({tenantId}, {limit: 500})).items.map((e) => e.action)
        expect(actions.filter((a) => a.startsWith('user.'))).toEqual(
          expect.arrayContaining(['user.create', 'user.oidc_login', 'user.login', 'user.update']),
        )
      })

      it("gives the group claims of the tenant's users, every identity together, and tells a login that changed them", async () => {
        const gina = await writes.oidcLogin(
          login({subject: 'g-1', groups: ['ops', 'eng'], usernames: ['gina']}),
          session(),
          base,
        )
        expect(gina.groupsChanged).toBe(false)
        await store.write((tx) =>
          tx.insertIdentity({
            issuer: 'https://other.example',
            subject: 'g-1',
            userId: gina.user.id,
            provider: 'other',
            email: null,
            groups: ['x', 'eng'],
            createdAt: T0,
            lastLoginAt: T0,
          }),
        )
        const gus = await writes.oidcLogin(
          login({subject: 'g-2', groups: [], usernames: ['gus']}),
          session(),
          base,
        )
        const groups = await store.identityGroupsOf(tenantId)
        expect(groups.get(gina.user.id)).toEqual(['eng', 'ops', 'x'])
        expect(groups.has(gus.user.id)).toBe(false)
        // The same groups in another order are no change; one group fewer is.
        const same = await writes.oidcLogin(login({subject: 'g-1', groups: ['eng', 'ops']}), session(), base)
        expect(same.groupsChanged).toBe(false)
        const fewer = await writes.oidcLogin(login({subject: 'g-1', groups: ['eng']}), session(), base)
        expect(fewer.groupsChanged).toBe(true)
        expect((await store.identityGroupsOf(tenantId)).get(gina.user.id)).toEqual(['eng', 'x'])
      })

      it('refuses a second identity row for the same issuer + subject', async () => {
        const {user} = await writes.oidcLogin(login({subject: 'dup'}), session(), base)
        const code = await codeOf(
          store.write((tx) =>
            tx.insertIdentity({
              issuer: 'https://idp.example',
              subject: 'dup',
              userId: user.id,
              provider: 'corp',
              email: null,
              groups: [],
              createdAt: T0,
              lastLoginAt: T0,
            }),
          ),
        )
        expect(code).toBe('WRITE_CONFLICT')
      })

      it('refuses a login whose tenant for new users does not exist, and writes nothing', async () => {
        const l = login({subject: 'nowhere', tenant: 'no-such-tenant'})
        expect(await codeOf(writes.oidcLogin(l, session(), base))).toBe('OIDC_LOGIN_FAILED')
        expect(await store.getUser(l.newUserId)).toBeUndefined()
      })

      it('finishes a code flow once, expires flows, and lets one of two device polls ask the provider', async () => {
        const flow = (kind: 'code' | 'device', idHash: string, expiresAt = later(600_000)) => ({
          idHash,
          kind,
          provider: 'corp',
          data: {state: 's', interval: 5},
          createdAt: T0,
          expiresAt,
          nextPollAt: kind === 'device' ? T0 : null,
        })
        await writes.startOidcFlow(flow('code', 'c1'))
        const both = await Promise.all([writes.takeOidcFlow('c1', T0), peer.writes.takeOidcFlow('c1', T0)])
        expect(both.filter((f) => f !== undefined)).toEqual([
          expect.objectContaining({idHash: 'c1', data: {state: 's', interval: 5}}),
        ])
        await writes.startOidcFlow(flow('code', 'c2', later(1000)))
        expect(await writes.takeOidcFlow('c2', later(2000))).toBeUndefined()

        await writes.startOidcFlow(flow('device', 'd1'))
        const polls = await Promise.all([
          writes.pollOidcFlow('d1', T0, later(1000)),
          peer.writes.pollOidcFlow('d1', T0, later(1000)),
        ])
        expect(polls.map((p) => p?.ask).sort()).toEqual([false, true])
        await writes.slowOidcFlow('d1', later(10_000), {interval: 10})
        expect(await writes.pollOidcFlow('d1', later(5000), later(6000))).toMatchObject({
          ask: false,
          flow: {data: {interval: 10}},
        })
        expect(await writes.pollOidcFlow('d1', later(700_000), later(701_000))).toBeUndefined()
        expect(await writes.endOidcFlow('d1')).toBe(false)
        // A new flow sweeps the expired ones.
        await writes.startOidcFlow(flow('code', 'old', later(1000)))
        await writes.startOidcFlow({...flow('code', 'new'), createdAt: later(5000)})
        expect(await store.write((tx) => tx.getOidcFlow('old'))).toBeUndefined()
      })
    })

    describe('node key expiry and rotation (migration 0016)', () => {
      const T0 = '2026-11-22T00:00:00.000Z'
      const at = (ms: number) => new Date(Date.parse(T0) + ms).toISOString()
      const DAY = 86_400_000
      const register = async (netId: string) =>
        (await writes.registerNode({kind: 'open', networkId: netId}, newNode(), ctx({at: T0}))).node!

      it("stores the tenant's key lifetime (default 180 days, 0: never) and stamps it on new nodes", async () => {
        const net = await makeNetwork({joinPolicy: 'open', cidr: '10.97.0.0/24'})
        expect(await store.tenantKeyDays(tenantId)).toBe(180)
        expect((await register(net.id)).keyExpiresAt).toBe(at(180 * DAY))
        expect(await writes.setTenantKeyDays(tenantId, 0, ctx())).toBe(0)
        expect(await store.tenantKeyDays(tenantId)).toBe(0)
        const never = await register(net.id)
        expect(never.keyExpiresAt).toBeNull()
        expect((await store.getNode(never.id))?.keyExpiresAt).toBeNull()
        const audit = await store.listAudit({tenantId}, {limit: 500})
        expect(audit.items.some((e) => e.action === 'tenant.key_expiry')).toBe(true)
      })

      it('lists active nodes by key expiry in a window, soonest first and bounded, unwarned only when asked', async () => {
        const net = await makeNetwork({joinPolicy: 'open', cidr: '10.97.1.0/24'})
        const n1 = await register(net.id)
        const n2 = await register(net.id)
        const n3 = await register(net.id)
        await writes.extendNodeKey(n1.id, at(DAY), ctx({at: T0}))
        await writes.extendNodeKey(n2.id, at(2 * DAY), ctx({at: T0}))
        await writes.extendNodeKey(n3.id, null, ctx({at: T0}))
        const ids = async (q: Parameters<Store['keyExpiries']>[0]) =>
          (await store.keyExpiries(q)).map((n) => n.id).filter((id) => [n1.id, n2.id, n3.id].includes(id))
        expect(await ids({after: null, until: at(3 * DAY), limit: 100})).toEqual([n1.id, n2.id])
        expect(await ids({after: at(DAY), until: at(3 * DAY), limit: 100})).toEqual([n2.id])
        expect(await store.keyExpiries({after: null, until: at(3 * DAY), limit: 1})).toHaveLength(1)
        expect(await writes.markKeyWarned(n1.id, T0)).toBeDefined()
        expect(await writes.markKeyWarned(n1.id, T0)).toBeUndefined()
        expect(await ids({after: null, until: at(3 * DAY), unwarned: true, limit: 100})).toEqual([n2.id])
        // Disabled by the sweep: no longer listed, audited as the system did it.
        expect(await writes.disableExpiredNode(n1.id, ctx({at: at(DAY), actor: 'system'}))).toMatchObject({
          kind: 'changed',
          node: {status: 'disabled'},
        })
        expect(await writes.disableExpiredNode(n2.id, ctx({at: at(DAY)}))).toBeUndefined()
        expect(await ids({after: null, until: at(3 * DAY), limit: 100})).toEqual([n2.id])
      })

      it('keeps a pending node pending through expire and extend (no way around its approval)', async () => {
        const net = await makeNetwork({joinPolicy: 'approval', cidr: '10.97.3.0/24'})
        const n = await register(net.id)
        expect(n.status).toBe('pending')
        expect((await writes.expireNodeKey(n.id, ctx({at: at(DAY)}))).node?.status).toBe('pending')
        expect((await writes.extendNodeKey(n.id, at(30 * DAY), ctx({at: at(DAY)}))).node?.status).toBe(
          'pending',
        )
      })

      it('rotates a public key in place: address kept, expiry restarted, warning cleared, old key free, audited', async () => {
        const net = await makeNetwork({joinPolicy: 'open', cidr: '10.97.2.0/24'})
        const n = await register(net.id)
        const other = await register(net.id)
        await writes.markKeyWarned(n.id, T0)
        const fresh = key()
        const change = await writes.rotateNodeKey(n.id, fresh, ctx({at: at(DAY)}))
        expect(change.node).toMatchObject({publicKey: fresh, address: n.address, keyExpiresAt: at(181 * DAY)})
        expect(change.before?.publicKey).toBe(n.publicKey)
        expect((await store.getNode(n.id))?.keyWarnedAt).toBeNull()
        expect(await codeOf(writes.rotateNodeKey(n.id, other.publicKey, ctx({at: at(DAY)})))).toBe(
          'PUBLIC_KEY_TAKEN',
        )
        expect(await codeOf(writes.rotateNodeKey(n.id, fresh, ctx({at: at(DAY)})))).toBe('PUBLIC_KEY_TAKEN')
        // The old key is free again: a new node may register with it.
        await writes.registerNode({kind: 'open', networkId: net.id}, newNode({publicKey: n.publicKey}), ctx())
        await writes.expireNodeKey(n.id, ctx({at: at(2 * DAY)}))
        expect(await codeOf(writes.rotateNodeKey(n.id, key(), ctx({at: at(2 * DAY)})))).toBe(
          'NODE_KEY_EXPIRED',
        )
        const back = await writes.extendNodeKey(n.id, at(40 * DAY), ctx({at: at(2 * DAY)}))
        expect(back.node).toMatchObject({status: 'active', keyExpiresAt: at(40 * DAY)})
        expect(await codeOf(writes.extendNodeKey(n.id, at(DAY), ctx({at: at(2 * DAY)})))).toBe(
          'VALIDATION_FAILED',
        )
        const actions = (await store.listAudit({tenantId}, {limit: 500})).items
          .filter((e) => e.targetId === n.id)
          .map((e) => e.action)
        expect(actions).toEqual(expect.arrayContaining(['node.rotate_key', 'node.expire', 'node.extend']))
      })
    })
  })
}
