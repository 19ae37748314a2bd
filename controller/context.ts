/**
 * What the controller's parts share about a request and about logging: where a request came
 * from, the audit context stamped on every write it makes, and the small logger shape the parts
 * take (pino's child loggers satisfy it).
 *
 * Replicas: nothing here holds state; an audit context carries the replica's clock time.
 */
import type {Clock} from '../shared/clock.js'
import type {AuditContext} from './store/store.js'

/** Where a request came from: stamped on audit entries. */
export interface RequestMeta {
  readonly sourceAddress: string | null
  readonly requestId: string | null
}

/** What a system action (the reaper, the first start) records as its request. */
export const NO_REQUEST: RequestMeta = {sourceAddress: null, requestId: null}

/** The logger a part writes to: debug for telemetry, warn for failures it swallows. */
export interface PartLog {
  debug(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

export const SILENT_LOG: PartLog = {debug: () => undefined, warn: () => undefined}

/** The audit context of `actor` for a request, at the clock's time. */
export function auditContext(
  clock: Clock,
  actor: {actor: string; actorName: string},
  meta: RequestMeta,
): AuditContext {
  return {
    ...actor,
    sourceAddress: meta.sourceAddress,
    requestId: meta.requestId,
    at: new Date(clock.now()).toISOString(),
  }
}

/** The audit context of a user's request. */
export const userContext = (clock: Clock, user: {id: string; username: string}, meta: RequestMeta) =>
  auditContext(clock, {actor: `user:${user.id}`, actorName: user.username}, meta)

/** The audit context of what the controller does by itself (first start, the reaper). */
export const systemContext = (clock: Clock) =>
  auditContext(clock, {actor: 'system', actorName: 'system'}, NO_REQUEST)
