/**
 * The controller's OpenID Connect settings (issue 10): which issuers people may log in with,
 * as what client, which claims carry their name and groups, which tenant a first login lands in
 * and which groups make which tenant role. They live in their own file (`--oidc-config FILE`,
 * MESH_OIDC_CONFIG, or `controller.oidcConfig` in the config file) rather than as settings of
 * their own: a list of issuers, each a mapping, has no flag or environment form, and a client
 * secret belongs in a file only its owner can read (a file that holds one and that group or
 * others may read is refused).
 */
import fs from 'node:fs/promises'
import {z} from 'zod'
import {MeshError} from '../../shared/errors.js'
import {RoleSchema, type Role} from '../../shared/protocol/control-api.js'

const NameRe = /^[a-z0-9][a-z0-9-]{0,31}$/

export const OidcIssuerSchema = z.strictObject({
  /** What `mesh login --oidc --issuer NAME` calls it; the first issuer is the default. */
  name: z.string().regex(NameRe, 'lowercase letters, digits and dashes, 1-32 characters'),
  /** The issuer identifier; its /.well-known/openid-configuration is read at the first login. */
  issuer: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}),
  clientId: z.string().min(1).max(500),
  /** For a confidential client; omit for a public one (PKCE alone protects the code). */
  clientSecret: z.string().min(1).max(2000).optional(),
  /** Scopes asked for; `openid` is always sent. */
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/))
    .max(20)
    .default(['openid', 'profile', 'email']),
  /** The claim (ID token, else UserInfo) that lists the person's groups. */
  groupsClaim: z.string().min(1).max(100).default('groups'),
  /** The claim a new user's name is made from (then `email`'s local part, then `sub`). */
  usernameClaim: z.string().min(1).max(100).default('preferred_username'),
  /** The tenant (by name) that a person's first login puts its new user in. */
  tenant: z.string().min(1).max(100).default('default'),
  /** A new user's tenant role when no group maps to one. */
  defaultRole: RoleSchema.default('member'),
  /**
   * Group → tenant role. When given, each login sets the user's tenant role to the highest role
   * its groups map to (defaultRole when none does); superusers are never changed.
   */
  roles: z.record(z.string().min(1).max(200), RoleSchema).optional(),
  /**
   * Let the issuer be plain http:// (tests and labs on one machine only: tokens and codes then
   * travel unencrypted).
   */
  allowHttp: z.boolean().default(false),
})
export type OidcIssuerConfig = z.infer<typeof OidcIssuerSchema>

export const OidcConfigSchema = z
  .strictObject({
    issuers: z.array(OidcIssuerSchema).min(1).max(20),
    /**
     * Logins in progress one client address may hold at once (default 10). Raise it when many
     * people reach the controller from one address (an office behind one NAT, a proxy that is
     * not in --trusted-proxies).
     */
    pendingPerAddress: z.number().int().min(1).max(100_000).default(10),
  })
  .refine((c) => new Set(c.issuers.map((i) => i.name)).size === c.issuers.length, {
    message: 'issuer names must differ',
    path: ['issuers'],
  })
  .refine((c) => c.issuers.every((i) => i.allowHttp || i.issuer.startsWith('https:')), {
    message: 'an http:// issuer needs allowHttp: true (tests and labs only)',
    path: ['issuers'],
  })
export type OidcConfig = z.infer<typeof OidcConfigSchema>
export type OidcConfigInput = z.input<typeof OidcConfigSchema>

/** The highest role the groups map to, or undefined when the issuer maps none (or no group matched). */
export function mappedRole(cfg: OidcIssuerConfig, groups: readonly string[]): Role | undefined {
  if (!cfg.roles) return undefined
  const order: readonly Role[] = ['owner', 'admin', 'member', 'guest']
  const have = new Set(groups.map((g) => cfg.roles![g]).filter((r): r is Role => r !== undefined))
  return order.find((r) => have.has(r)) ?? cfg.defaultRole
}

/** Parses and checks a config object; CONFIG_INVALID naming the key otherwise. */
export function parseOidcConfig(value: unknown, where: string): OidcConfig {
  const parsed = OidcConfigSchema.safeParse(value)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const key = issue?.path.length ? `${issue.path.join('.')}: ` : ''
  throw new MeshError('CONFIG_INVALID', {message: `${where}: ${key}${issue?.message ?? 'invalid'}`})
}

/**
 * Reads the OIDC file (YAML or JSON). Refused: a file group or others may write, and one that
 * holds a client secret and that group or others may read.
 */
export async function loadOidcConfig(file: string): Promise<OidcConfig> {
  let text: string
  let mode: number
  try {
    const st = await fs.stat(file)
    mode = st.mode
    text = await fs.readFile(file, 'utf8')
  } catch (err) {
    throw new MeshError('CONFIG_INVALID', {
      message: `${file}: cannot read the OIDC config (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    })
  }
  if ((mode & 0o022) !== 0) {
    throw new MeshError('CONFIG_INVALID', {
      message: `${file}: writable by group or others; the controller refuses it`,
      hint: `chmod 600 ${file}`,
    })
  }
  let value: unknown
  try {
    if (/\.ya?ml$/i.test(file)) {
      const {defaultLoaders} = await import('cosmiconfig')
      value = await defaultLoaders['.yaml'](file, text)
    } else value = JSON.parse(text)
  } catch (err) {
    throw new MeshError('CONFIG_INVALID', {message: `${file}: ${(err as Error).message}`})
  }
  const cfg = parseOidcConfig(value, file)
  if ((mode & 0o044) !== 0 && cfg.issuers.some((i) => i.clientSecret !== undefined)) {
    throw new MeshError('CONFIG_INVALID', {
      message: `${file}: holds a client secret and group or others may read it`,
      hint: `chmod 600 ${file}`,
    })
  }
  return cfg
}
