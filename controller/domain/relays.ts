/**
 * Relays shared by controller replicas: relay keys, the relays that heartbeat (stand-alone ones
 * and each replica's built-in one), and the relay-mesh secret. The rules, run inside
 * store.write(tx => ...), so every replica on one database decides the same way.
 *
 * Liveness is a TTL, as shared presence's (controller/replicas/shared-presence.ts): every beat
 * pushes the relay's expiry forward; a relay whose expiry passed is no longer listed (liveRelays
 * reads `expires_at >= now`) and a later sweep deletes its row. No replica has to be the one
 * that saw the relay to drop it.
 */
import type {RelayKey} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import type {AuditContext, NewRelayKey, RelayBeat, RelayKeyRecord, Tx} from '../store/store.js'
import {publicRelayKey} from '../store/store.js'
import {appendAudit as chainAudit} from './audit.js'

/** The settings row holding the token relays present to each other on mesh links. */
export const RELAY_MESH_SECRET = 'relay_mesh_secret'

/** A key from a DATA_DIR/relay-keys.json of an older mesh (controller/relay/registry.ts). */
export interface ImportedRelayKey {
  readonly id: string
  readonly region: string
  /** SHA-256 of the key, hex. */
  readonly hash: string
  readonly createdAt: string
}

/** `tenantId`: the creating user's tenant, so the entry shows in that tenant's audit log. */
export async function createRelayKey(
  tx: Tx,
  key: NewRelayKey,
  ctx: AuditContext,
  tenantId: string | null,
): Promise<RelayKey> {
  await tx.insertRelayKey({...key, at: ctx.at})
  await chainAudit(tx, ctx, {
    tenantId,
    action: 'relaykey.create',
    targetType: 'relaykey',
    targetId: key.id,
    networkId: null,
    detail: {name: key.name, region: key.region},
  })
  return publicRelayKey((await tx.getRelayKey(key.id)) as RelayKeyRecord)
}

/** Revoking twice is a no-op that keeps the first time. The key's relays leave the list at once. */
export async function revokeRelayKey(
  tx: Tx,
  id: string,
  ctx: AuditContext,
  tenantId: string | null,
): Promise<RelayKey> {
  const key = await tx.getRelayKey(id)
  if (!key) throw new MeshError('NOT_FOUND', {message: 'relay key not found'})
  await tx.revokeRelayKey(id, ctx.at)
  const relays = await tx.deleteRelaysOfKey(id)
  await chainAudit(tx, ctx, {
    tenantId,
    action: 'relaykey.revoke',
    targetType: 'relaykey',
    targetId: id,
    networkId: null,
    detail: {relays},
  })
  return publicRelayKey((await tx.getRelayKey(id)) as RelayKeyRecord)
}

/**
 * Copies the keys of a DATA_DIR/relay-keys.json into the database, keeping their ids and hashes
 * (relays keep working with the keys they have). Keys already there (by id or hash) are
 * skipped, so every start of every replica may run it. Returns the ids imported.
 */
export async function importRelayKeys(
  tx: Tx,
  keys: readonly ImportedRelayKey[],
  ctx: AuditContext,
): Promise<string[]> {
  const imported: string[] = []
  for (const k of keys) {
    if ((await tx.getRelayKey(k.id)) || (await tx.relayKeyByHash(k.hash))) continue
    await tx.insertRelayKey({
      id: k.id,
      name: `imported ${k.id}`,
      region: k.region,
      keyHash: k.hash,
      prefix: 'mrelay_',
      createdBy: null,
      at: k.createdAt,
    })
    await chainAudit(tx, ctx, {
      tenantId: null,
      action: 'relaykey.import',
      targetType: 'relaykey',
      targetId: k.id,
      networkId: null,
      detail: {region: k.region, from: 'relay-keys.json'},
    })
    imported.push(k.id)
  }
  return imported
}

/**
 * One heartbeat: the relay is listed until `beat.expiresAt`. Refused (UNAUTHENTICATED) when its
 * key was revoked since the caller checked it. Returns true when the row is new.
 */
export async function relayHeartbeat(tx: Tx, beat: RelayBeat): Promise<boolean> {
  if (beat.keyId !== null) {
    const key = await tx.getRelayKey(beat.keyId)
    if (!key || key.revokedAt !== null)
      throw new MeshError('UNAUTHENTICATED', {message: 'the relay key is not valid'})
  }
  return tx.upsertRelay(beat)
}

/** Deletes the rows of relays whose TTL passed; returns how many. */
export async function sweepRelays(tx: Tx, at: string): Promise<number> {
  return tx.deleteExpiredRelays(at)
}

/** A relay stops (a replica shutting down cleanly): it leaves the list at once, not at its TTL. */
export async function leaveRelays(tx: Tx, url: string): Promise<boolean> {
  return tx.deleteRelay(url)
}

/**
 * The token relays present to each other on mesh links, one per deployment: the first replica
 * to ask stores `fresh`; every later call (any replica) gets the stored one.
 */
export async function relayMeshSecret(tx: Tx, fresh: string, at: string): Promise<string> {
  return tx.insertSettingIfAbsent(RELAY_MESH_SECRET, fresh, at)
}
