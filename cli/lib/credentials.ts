/**
 * The CLI's login state: credentials.json in the config dir (mode 0600, written atomically),
 * and the rule that MESH_CONTROLLER and MESH_TOKEN override the file field by field.
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import {z} from 'zod'
import {MeshError} from '../../shared/errors.js'
import {cliConfigDir} from '../../shared/paths.js'

export const CredentialsSchema = z.object({
  controller: z.string().min(1),
  token: z.string().min(1),
  user: z.string(),
  tenant: z.string(),
  expiresAt: z.string(),
  /** The session's refresh token and its expiry (controllers from schema 0014 on). */
  refreshToken: z.string().min(1).optional(),
  refreshExpiresAt: z.string().optional(),
  sessionId: z.string().optional(),
})
export type Credentials = z.infer<typeof CredentialsSchema>

export const credentialsPath = (dir: string = cliConfigDir()): string => path.join(dir, 'credentials.json')

/** The stored credentials, or undefined when there is no file. A damaged file is CONFIG_INVALID. */
export async function readCredentials(file: string = credentialsPath()): Promise<Credentials | undefined> {
  let text: string
  try {
    text = await fs.readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let parsed: ReturnType<typeof CredentialsSchema.safeParse>
  try {
    parsed = CredentialsSchema.safeParse(JSON.parse(text))
  } catch {
    parsed = CredentialsSchema.safeParse(undefined)
  }
  if (!parsed.success) {
    throw new MeshError('CONFIG_INVALID', {
      message: `${file} is not a valid mesh credentials file`,
      hint: 'run `mesh logout` and `mesh login --controller URL` again',
    })
  }
  return parsed.data
}

/**
 * Writes the credentials so that no other user can read them at any moment: the directory is
 * 0700, the file is created 0600 under a temporary name (O_EXCL, so never someone else's file),
 * synced, then renamed over the old one, which is atomic on one file system.
 */
export async function writeCredentials(creds: Credentials, file: string = credentialsPath()): Promise<void> {
  const dir = path.dirname(file)
  await fs.mkdir(dir, {recursive: true, mode: 0o700})
  await fs.chmod(dir, 0o700)
  const tmp = path.join(dir, `.credentials.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  const handle = await fs.open(tmp, 'wx', 0o600)
  try {
    await handle.writeFile(`${JSON.stringify(CredentialsSchema.parse(creds), null, 2)}\n`)
    await handle.sync()
    await handle.close()
    await fs.rename(tmp, file)
  } catch (err) {
    await handle.close().catch(() => undefined)
    await fs.rm(tmp, {force: true})
    throw err
  }
}

/** Deletes the file; false when there was none (logging out twice is fine). */
export async function deleteCredentials(file: string = credentialsPath()): Promise<boolean> {
  try {
    await fs.unlink(file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

/** Where each part of a session came from. */
export type Source = 'env' | 'file'

export interface Session {
  controller: string
  token: string
  /** Known only when the token is the file's: an env token may belong to anyone. */
  user?: string
  tenant?: string
  expiresAt?: string
  source: {controller: Source; token: Source}
}

/**
 * Merges the environment over the file, field by field: MESH_CONTROLLER replaces the file's
 * controller and MESH_TOKEN its token, each on its own — except that the file's token is only
 * used with the controller it came from. Throws NOT_LOGGED_IN when either part is missing.
 */
export function resolveSession(
  file: Credentials | undefined,
  env: Record<string, string | undefined> = process.env,
): Session {
  const envController = env.MESH_CONTROLLER?.trim() || undefined
  const envToken = env.MESH_TOKEN?.trim() || undefined
  const controller = envController ?? file?.controller
  // A saved token belongs to the controller it was issued by: never send it to another one
  // just because MESH_CONTROLLER points elsewhere (that would hand it to a stranger).
  const fileTokenUsable = file !== undefined && sameController(file.controller, controller)
  const token = envToken ?? (fileTokenUsable ? file.token : undefined)
  if (controller === undefined || token === undefined) {
    const missing =
      controller === undefined
        ? 'no controller URL'
        : file !== undefined && !fileTokenUsable
          ? `the saved login is for ${file.controller}, not ${controller}`
          : 'no token'
    throw new MeshError('NOT_LOGGED_IN', {
      message: `not logged in to a controller (${missing})`,
    })
  }
  const session: Session = {
    controller,
    token,
    source: {controller: envController ? 'env' : 'file', token: envToken ? 'env' : 'file'},
  }
  if (!envToken && fileTokenUsable) {
    session.user = file.user
    session.tenant = file.tenant
    session.expiresAt = file.expiresAt
  }
  return session
}

/** Two controller URLs name the same controller (origin compare; trailing slashes ignored). */
function sameController(a: string, b: string | undefined): boolean {
  if (b === undefined) return false
  try {
    return new URL(a).origin === new URL(b).origin
  } catch {
    return a.replace(/\/+$/, '') === b.replace(/\/+$/, '')
  }
}
