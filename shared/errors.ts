/**
 * The one table of errors a user can see, from any of the three programs.
 *
 * The code is the contract: clients match on `err.code`, never on message text or `instanceof`.
 * Each entry carries the HTTP status used on the wire (controller API and daemon socket alike),
 * the CLI exit code (sysexits.h numbers; documented in man/mesh-errors.7, generated from this
 * table and kept in sync by a test) and a one-line hint of what to do.
 */

export interface ErrorSpec {
  /** HTTP status when this error crosses the controller API or the daemon socket. */
  readonly status: number
  /** Process exit code of the CLI when a command fails with this error. */
  readonly exit: number
  /** One line, no trailing period. Callers may pass a more specific message. */
  readonly message: string
  /** One line: what the user can do about it. */
  readonly hint: string
}

/** Exit codes, after sysexits.h. Documented in man/mesh-errors.7. */
export const EXIT = {
  OK: 0,
  /** Unexpected failure (a bug); rerun with --verbose for the stack. */
  FAILURE: 1,
  /** Flags or arguments did not parse (oclif's own usage errors). */
  USAGE_PARSE: 2,
  USAGE: 64,
  DATAERR: 65,
  NOINPUT: 66,
  NOUSER: 67,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  CANTCREAT: 73,
  TEMPFAIL: 75,
  /** The controller's reply was too large, not JSON, or outside the protocol (EX_PROTOCOL). */
  PROTOCOL: 76,
  NOPERM: 77,
  CONFIG: 78,
  /** No such command (the shell's "command not found"). */
  COMMAND_NOT_FOUND: 127,
} as const

export const EXIT_DESCRIPTIONS: Record<number, string> = {
  [EXIT.OK]: 'success',
  [EXIT.FAILURE]: 'unexpected failure (a bug); rerun with --verbose and report it',
  [EXIT.USAGE_PARSE]: 'flags or arguments did not parse',
  [EXIT.USAGE]: 'the command was used wrongly (bad argument value, prompt needed without a TTY)',
  [EXIT.DATAERR]: 'the input was rejected as invalid (HTTP 400/413)',
  [EXIT.NOINPUT]: 'the thing named does not exist (HTTP 404)',
  [EXIT.NOUSER]: 'not logged in, or the credentials were refused (HTTP 401)',
  [EXIT.UNAVAILABLE]: 'the controller or meshd could not be reached, or is not ready',
  [EXIT.SOFTWARE]: 'the server failed (HTTP 5xx)',
  [EXIT.CANTCREAT]: 'conflict: the name, key or address is taken, or a limit is reached (HTTP 409)',
  [EXIT.TEMPFAIL]: 'temporary failure; retry later (HTTP 429, or 503 when the controller storage is full)',
  [EXIT.PROTOCOL]:
    'the controller sent a reply mesh cannot use: too large, not JSON, or outside the protocol',
  [EXIT.NOPERM]: 'not allowed (HTTP 403): role, revoked/expired invite or key, socket permissions',
  [EXIT.CONFIG]: 'configuration or environment problem (Node version, database version, config file)',
  [EXIT.COMMAND_NOT_FOUND]: 'no such command (a suggestion of the closest one is printed)',
}

const e = (status: number, exit: number, message: string, hint: string): ErrorSpec => ({
  status,
  exit,
  message,
  hint,
})

export const ERRORS = {
  // ---- generic request errors (controller API and daemon socket)
  INVALID_JSON: e(
    400,
    EXIT.DATAERR,
    'the request body is not valid JSON',
    'send a JSON object with Content-Type: application/json',
  ),
  VALIDATION_FAILED: e(
    400,
    EXIT.DATAERR,
    'the request is invalid',
    'fix the field named in the message and retry',
  ),
  PAYLOAD_TOO_LARGE: e(413, EXIT.DATAERR, 'the request body is larger than 1 MiB', 'send a smaller body'),
  UNSUPPORTED_MEDIA_TYPE: e(
    415,
    EXIT.DATAERR,
    'the request body must be JSON',
    'send Content-Type: application/json',
  ),
  NOT_FOUND: e(
    404,
    EXIT.NOINPUT,
    'not found',
    'check the id or name; list what exists with the matching `list` command',
  ),
  METHOD_NOT_ALLOWED: e(
    405,
    EXIT.USAGE,
    'method not allowed on this path',
    'see /api/v1/openapi.json for the routes',
  ),
  UPGRADE_REQUIRED: e(
    426,
    EXIT.USAGE,
    'this endpoint needs a WebSocket upgrade',
    'connect with a WebSocket client',
  ),
  UNAUTHENTICATED: e(
    401,
    EXIT.NOUSER,
    'not authenticated',
    'log in with `mesh login --controller URL`, or set MESH_TOKEN',
  ),
  INVALID_CREDENTIALS: e(
    401,
    EXIT.NOUSER,
    'wrong user name or password',
    'check the user name and password and try again',
  ),
  FORBIDDEN: e(
    403,
    EXIT.NOPERM,
    'your role does not allow this',
    'ask an owner or admin of the tenant or network',
  ),
  ROLE_TOO_HIGH: e(
    403,
    EXIT.NOPERM,
    'you cannot grant a role above your own',
    'grant a role at or below yours, or ask an owner',
  ),
  OUTRANKED: e(
    403,
    EXIT.NOPERM,
    "this user's role outranks yours",
    'ask an owner (or a superuser) to change this user',
  ),
  RATE_LIMITED: e(429, EXIT.TEMPFAIL, 'too many attempts', 'wait a minute and try again'),
  INTERNAL: e(
    500,
    EXIT.SOFTWARE,
    'internal error',
    'retry; if it persists, report it with the request id from the controller log',
  ),
  NOT_READY: e(
    503,
    EXIT.UNAVAILABLE,
    'the service is not ready',
    'check the controller log; the database may be unreachable',
  ),
  STORAGE_FULL: e(
    503,
    EXIT.TEMPFAIL,
    "the controller's storage is full",
    'free disk space on the controller host; writes resume by themselves',
  ),
  STORAGE_UNAVAILABLE: e(
    503,
    EXIT.UNAVAILABLE,
    'the controller cannot write its database',
    "check the controller log and its data directory's disk (read-only, failing, or out of quota)",
  ),
  WRITE_CONFLICT: e(
    409,
    EXIT.TEMPFAIL,
    'the change collided with a concurrent change',
    'try again; the other change has been committed',
  ),

  // ---- model rules (controller)
  INVALID_CIDR: e(
    400,
    EXIT.DATAERR,
    'the CIDR is not a valid network prefix',
    'give an IPv4 prefix such as 10.20.0.0/24 (host bits zero, /8 to /30)',
  ),
  CIDR_OVERLAP: e(
    400,
    EXIT.DATAERR,
    'the CIDR overlaps another network of this tenant',
    'pick a prefix that no other network of the tenant uses',
  ),
  POLICY_INVALID: e(
    400,
    EXIT.DATAERR,
    'the ACL policy does not parse or names something wrong',
    'fix the line and rule named in the message (`mesh policy check FILE` shows every error)',
  ),
  POLICY_TESTS_FAILED: e(
    400,
    EXIT.DATAERR,
    "the ACL policy's own tests fail",
    'fix the rules or the test named in the message; nothing was stored',
  ),
  POLICY_VERSION_CONFLICT: e(
    409,
    EXIT.CANTCREAT,
    'the policy changed since the version you edited',
    'get it again (`mesh policy get`), merge your change and set it with the new --if-version',
  ),
  NETWORK_NAME_TAKEN: e(
    409,
    EXIT.CANTCREAT,
    'a network with this name already exists',
    'pick another name, or use the existing network',
  ),
  NETWORK_NOT_EMPTY: e(
    409,
    EXIT.CANTCREAT,
    'the network still has nodes',
    'remove its nodes first, or pass --force',
  ),
  ADDRESS_POOL_EXHAUSTED: e(
    409,
    EXIT.CANTCREAT,
    'every address of the network CIDR is in use',
    'remove unused nodes, or create a network with a larger CIDR',
  ),
  NETWORK_MAX_NODES: e(
    409,
    EXIT.CANTCREAT,
    'the network has reached its maximum number of nodes',
    'raise it with `mesh network set NAME --max-nodes N` or remove nodes',
  ),
  USERNAME_TAKEN: e(409, EXIT.CANTCREAT, 'a user with this name already exists', 'pick another user name'),
  TENANT_NAME_TAKEN: e(
    409,
    EXIT.CANTCREAT,
    'a tenant with this name already exists',
    'pick another tenant name',
  ),
  NODE_NAME_TAKEN: e(
    409,
    EXIT.CANTCREAT,
    'a node with this name already exists in the network',
    'pick another name',
  ),
  PUBLIC_KEY_TAKEN: e(
    409,
    EXIT.CANTCREAT,
    'a node with this public key is already in the network',
    'each node needs its own key pair; leave and join again to make a new one',
  ),
  NODE_NOT_PENDING: e(
    409,
    EXIT.CANTCREAT,
    'the node is not waiting for approval',
    'only pending nodes can be approved',
  ),
  USER_NAMED_IN_POLICY: e(
    409,
    EXIT.CANTCREAT,
    'the ACL policy names this user',
    'change the policy to the new name first (`mesh policy get`, edit, `mesh policy set`), then rename',
  ),
  USER_HAS_NODES: e(
    409,
    EXIT.CANTCREAT,
    'the user still owns nodes',
    'choose what happens to them: `mesh user delete USER --nodes remove` or `--nodes reassign --to OTHER`',
  ),
  INVITE_INVALID: e(
    403,
    EXIT.NOPERM,
    'the invite code is not valid',
    'check that the whole invite was copied, or ask for a new one',
  ),
  INVITE_EXPIRED: e(403, EXIT.NOPERM, 'the invite has expired', 'ask an admin for a new invite'),
  INVITE_USED_UP: e(
    403,
    EXIT.NOPERM,
    'the invite has been used the maximum number of times',
    'ask an admin for a new invite',
  ),
  INVITE_REVOKED: e(403, EXIT.NOPERM, 'the invite has been revoked', 'ask an admin for a new invite'),
  AUTHKEY_INVALID: e(
    403,
    EXIT.NOPERM,
    'the auth key is not valid',
    'check the key, or create one with `mesh authkey create`',
  ),
  AUTHKEY_EXPIRED: e(
    403,
    EXIT.NOPERM,
    'the auth key has expired',
    'create a new one with `mesh authkey create`',
  ),
  AUTHKEY_USED: e(
    403,
    EXIT.NOPERM,
    'the single-use auth key has already been used',
    'create a reusable key, or a new single-use one',
  ),
  AUTHKEY_REVOKED: e(
    403,
    EXIT.NOPERM,
    'the auth key has been revoked',
    'create a new one with `mesh authkey create`',
  ),
  NODE_CREDENTIAL_INVALID: e(
    401,
    EXIT.NOUSER,
    'the node credential is not valid',
    'the node was removed or its credential revoked; join the network again',
  ),
  NODE_KEY_EXPIRED: e(
    403,
    EXIT.NOPERM,
    "the node's key expired",
    'an admin can renew it with `mesh node extend <node>`; rotate keys before they expire with `mesh rotate-key`',
  ),

  // ---- controller start-up
  DATABASE_NEWER_THAN_BINARY: e(
    500,
    EXIT.CONFIG,
    'the database was written by a newer mesh',
    'run the newer mesh binary, or restore a backup made by this version',
  ),
  BACKUP_INVALID: e(
    400,
    EXIT.DATAERR,
    'not a usable mesh controller backup',
    'take the backup again with `mesh controller backup`; the message says what is wrong',
  ),
  RESTORE_TARGET_NOT_EMPTY: e(
    409,
    EXIT.CANTCREAT,
    'the database to restore into is not empty',
    'restore into a new SQLite path or an empty PostgreSQL database',
  ),
  DATABASE_UNSUPPORTED: e(
    500,
    EXIT.CONFIG,
    'unsupported database URL',
    'use --database sqlite:PATH or --database postgres://USER:PASSWORD@HOST:PORT/DB',
  ),
  LISTEN_FAILED: e(
    500,
    EXIT.UNAVAILABLE,
    'could not listen on the address',
    'pick a free port with --listen HOST:PORT',
  ),
  NODE_VERSION_UNSUPPORTED: e(
    500,
    EXIT.CONFIG,
    'this Node.js is too old for mesh',
    'run mesh on Node.js 24 or newer (see .node-version)',
  ),
  CONFIG_INVALID: e(400, EXIT.CONFIG, 'the configuration is invalid', 'fix the key named in the message'),
  CONFIG_FILE_INVALID: e(
    400,
    EXIT.CONFIG,
    'a config file cannot be used',
    'fix the file and key named in the message; `mesh config show` prints every setting and where it comes from',
  ),

  // ---- CLI
  CONTROLLER_UNREACHABLE: e(
    503,
    EXIT.UNAVAILABLE,
    'cannot reach the controller',
    'check the URL and that `mesh controller start` is running there',
  ),
  CONTROLLER_BAD_REPLY: e(
    502,
    EXIT.PROTOCOL,
    'the controller sent a reply mesh cannot use',
    'check the controller URL; the server at it is not a mesh controller or is misbehaving',
  ),
  NOT_LOGGED_IN: e(
    401,
    EXIT.NOUSER,
    'not logged in to a controller',
    'run `mesh login --controller URL`, or set MESH_CONTROLLER and MESH_TOKEN',
  ),
  TTY_REQUIRED: e(
    400,
    EXIT.USAGE,
    'this needs an answer but stdin is not a terminal',
    'pass the value as a flag (see --help)',
  ),
  INVALID_ARGUMENT: e(400, EXIT.USAGE, 'invalid argument', 'see the command help with --help'),
  COMMAND_NOT_FOUND: e(404, EXIT.COMMAND_NOT_FOUND, 'no such command', '`mesh help` lists every command'),
  INVALID_INVITE_STRING: e(
    400,
    EXIT.USAGE,
    'this is not a mesh invite',
    'paste the whole string printed by `mesh invite create`',
  ),

  // ---- service install (mesh daemon|controller install|uninstall)
  SERVICE_MANAGER_UNAVAILABLE: e(
    503,
    EXIT.UNAVAILABLE,
    'there is no service manager to install into',
    'the unit is printed on stdout; run the program under your own supervisor',
  ),
  SERVICE_COMMAND_FAILED: e(
    500,
    EXIT.SOFTWARE,
    'a service manager command failed',
    'see `systemctl status UNIT` and `journalctl -u UNIT`',
  ),

  // ---- daemon (meshd) and its socket
  DAEMON_UNREACHABLE: e(
    503,
    EXIT.UNAVAILABLE,
    'cannot reach meshd',
    'start it with `sudo systemctl start meshd` (install it with `sudo mesh daemon install`) or run `sudo mesh daemon run`',
  ),
  SOCKET_PERMISSION_DENIED: e(
    403,
    EXIT.NOPERM,
    'not allowed to talk to meshd',
    'run with sudo, or add yourself to the `mesh` group',
  ),
  PROTOCOL_MISMATCH: e(
    400,
    EXIT.CONFIG,
    'the CLI and meshd speak different protocol versions',
    'use the same mesh version for the CLI and the daemon',
  ),
  NETWORK_NOT_JOINED: e(
    404,
    EXIT.NOINPUT,
    'not a member of this network',
    'list networks with `mesh status`; join with `mesh join <invite>`',
  ),
  ALREADY_JOINED: e(
    409,
    EXIT.CANTCREAT,
    'this node already belongs to the network',
    'use `mesh up NETWORK` to bring it up, or `mesh leave NETWORK` first',
  ),
  INTERFACE_NAME_TAKEN: e(
    409,
    EXIT.CANTCREAT,
    'the interface name is already used',
    'pick another with --interface',
  ),
  WIREGUARD_UNAVAILABLE: e(
    500,
    EXIT.CONFIG,
    'neither kernel WireGuard nor wireguard-go is available',
    'install wireguard-tools and wireguard-go (apt-get install wireguard-go wireguard-tools)',
  ),
  WIREGUARD_FAILED: e(
    500,
    EXIT.SOFTWARE,
    'configuring WireGuard failed',
    'see the meshd log; check that /dev/net/tun exists and meshd runs as root',
  ),
  ROOT_REQUIRED: e(500, EXIT.NOPERM, 'this must run as root', 'run it with sudo'),
  NETCHECK_UNAVAILABLE: e(
    503,
    EXIT.UNAVAILABLE,
    'netcheck cannot run: the network offers no STUN server',
    'wait for the netmap (`mesh status` shows the controller connected), or ask its admin to enable STUN',
  ),
  PEER_NOT_FOUND: e(
    404,
    EXIT.NOINPUT,
    'no such peer',
    'name a peer by its name, node id or mesh address as `mesh status` lists them',
  ),
  PING_UNAVAILABLE: e(
    503,
    EXIT.UNAVAILABLE,
    'cannot ping: the network is down',
    'bring it up with `mesh up NETWORK`',
  ),
  // ---- access and refresh tokens, sessions, MFA (issue 10)
  TOKEN_EXPIRED: e(
    401,
    EXIT.NOUSER,
    'the access token has expired',
    'the CLI refreshes it by itself; scripts call POST /api/v1/token/refresh with the refresh token',
  ),
  REFRESH_TOKEN_INVALID: e(
    401,
    EXIT.NOUSER,
    'the refresh token is unknown, expired or its session was revoked',
    'log in again with `mesh login`',
  ),
  REFRESH_TOKEN_REUSED: e(
    401,
    EXIT.NOUSER,
    'a refresh token that was already used came back: the whole session is revoked',
    'log in again with `mesh login`; if you did not copy the credentials file, someone else may have it',
  ),
  REFRESH_TOKEN_RACED: e(
    409,
    EXIT.TEMPFAIL,
    'this refresh token was just exchanged by another request from the same client',
    're-read the stored credentials and use the new tokens',
  ),
  MFA_REQUIRED: e(
    401,
    EXIT.NOUSER,
    'this account needs a one-time code from its authenticator app',
    'pass --otp CODE (or a recovery code), or log in on a terminal to be asked for it',
  ),
  MFA_CODE_INVALID: e(
    401,
    EXIT.NOUSER,
    'the one-time code is wrong, expired or already used',
    'wait for the next code in the authenticator app, or use one of the recovery codes',
  ),
  MFA_NOT_ENABLED: e(
    409,
    EXIT.CANTCREAT,
    'multi-factor authentication is not enabled for this account',
    'start with `mesh user mfa enable`',
  ),
  MFA_ALREADY_ENABLED: e(
    409,
    EXIT.CANTCREAT,
    'multi-factor authentication is already enabled for this account',
    'disable it first with `mesh user mfa disable --code CODE`',
  ),
  OIDC_NOT_CONFIGURED: e(
    404,
    EXIT.NOINPUT,
    'this controller has no such OpenID Connect issuer configured',
    'log in with a password, or ask the controller admin to configure OIDC (README: OIDC setup)',
  ),
  OIDC_LOGIN_FAILED: e(
    401,
    EXIT.NOUSER,
    'the OpenID Connect login failed',
    'start it again with `mesh login --oidc`; if it keeps failing, the controller log says why',
  ),
  OIDC_FLOW_EXPIRED: e(
    401,
    EXIT.NOUSER,
    'this OpenID Connect login expired or was already finished',
    'start it again with `mesh login --oidc`',
  ),
  OIDC_ACCESS_DENIED: e(
    403,
    EXIT.NOPERM,
    'the OpenID provider refused the login',
    'check with the provider that you may use this application, then try again',
  ),
  OIDC_PROVIDER_UNREACHABLE: e(
    502,
    EXIT.UNAVAILABLE,
    'the controller cannot reach the OpenID provider',
    'try again later; the controller admin can check the issuer URL and the network',
  ),
  SECRETS_KEY_MISSING: e(
    500,
    EXIT.CONFIG,
    'the controller has no secrets key to seal or open MFA secrets with',
    'give the controller its key file with --secrets-key-file (the same file on every replica; README: Backups and the secrets key)',
  ),
  SECRETS_KEY_MISMATCH: e(
    500,
    EXIT.CONFIG,
    "stored secrets were sealed with another secrets key than the controller's",
    'start the controller with the key file that belongs with this database (--secrets-key-file); README: Backups and the secrets key',
  ),
  SECRET_CORRUPT: e(
    500,
    EXIT.SOFTWARE,
    'a stored secret failed its integrity check (changed, or copied from another account)',
    "an admin resets the account's MFA (README: Backups and the secrets key); the user then enables it again",
  ),
  OIDC_IDENTITY_TAKEN: e(
    409,
    EXIT.CANTCREAT,
    'this OpenID identity already has an account',
    'log in with `mesh login --oidc`; an invite makes new accounts only',
  ),
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

export const isErrorCode = (code: unknown): code is ErrorCode =>
  typeof code === 'string' && Object.hasOwn(ERRORS, code)

/** The wire form of every error, on the controller API and the daemon socket alike. */
export interface WireError {
  error: {code: string; message: string; hint: string; detail?: unknown; requestId?: string}
}

/** An error a user must act on. Anything else that is thrown is a bug. */
export class MeshError extends Error {
  readonly code: ErrorCode
  readonly hint: string
  readonly status: number
  readonly exit: number
  readonly detail: unknown

  constructor(
    code: ErrorCode,
    opts: {message?: string; hint?: string; detail?: unknown; cause?: unknown} = {},
  ) {
    const spec: ErrorSpec = ERRORS[code]
    super(opts.message ?? spec.message, opts.cause === undefined ? undefined : {cause: opts.cause})
    this.name = 'MeshError'
    this.code = code
    this.hint = opts.hint ?? spec.hint
    this.status = spec.status
    this.exit = spec.exit
    this.detail = opts.detail
  }

  toWire(requestId?: string): WireError {
    const body: WireError['error'] = {code: this.code, message: this.message, hint: this.hint}
    if (this.detail !== undefined) body.detail = this.detail
    if (requestId !== undefined) body.requestId = requestId
    return {error: body}
  }

  /**
   * Rebuilds an error from a wire body. Unknown codes (a newer server) keep their message and
   * hint and map to the HTTP status's generic code so the exit code still makes sense.
   */
  static fromWire(body: unknown, status: number): MeshError {
    const err = (body as Partial<WireError> | undefined)?.error
    if (err && typeof err === 'object' && typeof err.code === 'string') {
      const code: ErrorCode = isErrorCode(err.code) ? err.code : codeForStatus(status)
      return new MeshError(code, {
        message: typeof err.message === 'string' ? err.message : undefined,
        hint: typeof err.hint === 'string' ? err.hint : undefined,
        detail: err.detail,
      })
    }
    return new MeshError(codeForStatus(status), {message: `unexpected HTTP ${status} reply`})
  }
}

export const isMeshError = (err: unknown): err is MeshError =>
  err instanceof Error && (err as MeshError).name === 'MeshError' && isErrorCode((err as MeshError).code)

export function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return 'VALIDATION_FAILED'
    case 401:
      return 'UNAUTHENTICATED'
    case 403:
      return 'FORBIDDEN'
    case 404:
      return 'NOT_FOUND'
    case 413:
      return 'PAYLOAD_TOO_LARGE'
    case 429:
      return 'RATE_LIMITED'
    case 503:
      return 'NOT_READY'
    default:
      return 'INTERNAL'
  }
}
