/**
 * The one-string invite: `meshinv1_` + base64url(JSON {c: controller URL, k: code}).
 * `mesh invite create` prints it; `mesh join <it>` needs nothing else.
 */
import {z} from 'zod'

const PREFIX = 'meshinv1_'
const PayloadSchema = z.object({c: z.url({protocol: /^https?$/}), k: z.string().min(16).max(200)})

export function encodeJoinString(controllerUrl: string, code: string): string {
  return PREFIX + Buffer.from(JSON.stringify({c: controllerUrl, k: code})).toString('base64url')
}

/** Returns undefined for anything that is not a well-formed join string. */
export function decodeJoinString(text: string): {controller: string; code: string} | undefined {
  const trimmed = text.trim()
  if (!trimmed.startsWith(PREFIX) || trimmed.length > 2000) return undefined
  try {
    const payload = PayloadSchema.safeParse(
      JSON.parse(Buffer.from(trimmed.slice(PREFIX.length), 'base64url').toString('utf8')),
    )
    return payload.success ? {controller: payload.data.c, code: payload.data.k} : undefined
  } catch {
    return undefined
  }
}
