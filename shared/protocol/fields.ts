/**
 * The field schemas both protocols use (the controller API and meshd's local API): names, ids,
 * WireGuard public keys, node status. Apart from control-api.ts so that a CLI command talking
 * only to meshd does not build every controller schema when it starts.
 */
import {z} from 'zod'
import {isLowOrderPublicKey, isWireGuardKey} from '../keys.js'

export const NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
export const NameSchema = z
  .string()
  .regex(NAME_RE, 'lowercase letters, digits and dashes, 1-63 characters, not starting or ending with a dash')
export const IdSchema = z.string().min(1).max(100)
export const PublicKeySchema = z
  .string()
  .refine(isWireGuardKey, 'a WireGuard public key (32 bytes, base64)')
  .refine(
    (k) => !isWireGuardKey(k) || !isLowOrderPublicKey(Buffer.from(k, 'base64')),
    'a low-order X25519 key (such as all zeros): no shared secret can come of it; use the key `wg pubkey` prints',
  )
export const NodeStatusSchema = z.enum(['pending', 'active', 'disabled'])
export type NodeStatus = z.infer<typeof NodeStatusSchema>
