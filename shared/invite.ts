/**
 * The one-string invites: a prefix + base64url(JSON {c: controller URL, k: code}).
 *  - `meshinv1_`: a device invite; `mesh invite create` prints it, `mesh join <it>` needs nothing else.
 *  - `meshuser1_`: a user invite; `mesh user invite` prints it, `mesh signup <it>` makes the account.
 * The prefixes differ so that either command can tell a person who pasted the other kind.
 */
import {z} from 'zod'

const PREFIX = 'meshinv1_'
const USER_PREFIX = 'meshuser1_'
const PayloadSchema = z.object({c: z.url({protocol: /^https?$/}), k: z.string().min(16).max(200)})

const encode = (prefix: string, controllerUrl: string, code: string): string =>
  prefix + Buffer.from(JSON.stringify({c: controllerUrl, k: code})).toString('base64url')

function decode(prefix: string, text: string): {controller: string; code: string} | undefined {
  const trimmed = text.trim()
  if (!trimmed.startsWith(prefix) || trimmed.length > 2000) return undefined
  try {
    const payload = PayloadSchema.safeParse(
      JSON.parse(Buffer.from(trimmed.slice(prefix.length), 'base64url').toString('utf8')),
    )
    return payload.success ? {controller: payload.data.c, code: payload.data.k} : undefined
  } catch {
    return undefined
  }
}

export function encodeJoinString(controllerUrl: string, code: string): string {
  return encode(PREFIX, controllerUrl, code)
}

/** Returns undefined for anything that is not a well-formed join string. */
export function decodeJoinString(text: string): {controller: string; code: string} | undefined {
  return decode(PREFIX, text)
}

export function encodeUserInviteString(controllerUrl: string, code: string): string {
  return encode(USER_PREFIX, controllerUrl, code)
}

/** Returns undefined for anything that is not a well-formed user invite string. */
export function decodeUserInviteString(text: string): {controller: string; code: string} | undefined {
  return decode(USER_PREFIX, text)
}

/** True when `text` looks like a device join string (someone passed one to `mesh signup`). */
export const isJoinString = (text: string): boolean => text.trim().startsWith(PREFIX)
/** True when `text` looks like a user invite string (someone passed one to `mesh join`). */
export const isUserInviteString = (text: string): boolean => text.trim().startsWith(USER_PREFIX)
