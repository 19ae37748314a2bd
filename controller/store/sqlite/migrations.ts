/**
 * The SQLite schema as an append-only list of migrations, applied with umzug at start.
 *
 * Rules: never edit or reorder a shipped migration; add a new one at the end. Each migration
 * runs in one transaction together with its row in `migrations`, so a crash leaves it either
 * fully applied or not at all. A database that lists a migration this binary does not know was
 * written by a newer mesh: start-up refuses it (DATABASE_NEWER_THAN_BINARY) rather than run
 * old code against a schema it does not understand.
 */
import type Database from 'better-sqlite3'
import {Umzug, type UmzugStorage} from 'umzug'
import {MeshError} from '../../../shared/errors.js'

export interface Migration {
  readonly name: string
  readonly sql: string
  /**
   * Runs with foreign keys off (PRAGMA foreign_keys cannot change inside a transaction, so it is
   * set around it), for a migration that rebuilds a table others refer to; foreign_key_check must
   * find nothing before the migration commits.
   */
  readonly foreignKeysOff?: boolean
}

export const MIGRATIONS: readonly Migration[] = [
  {
    name: '0001-initial',
    sql: `
CREATE TABLE tenants (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (t_...)
  name TEXT NOT NULL UNIQUE,             -- tenant name, unique across the controller
  created_at TEXT NOT NULL               -- RFC 3339 creation time
);

CREATE TABLE users (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (u_...)
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE, -- the tenant the user belongs to
  username TEXT NOT NULL UNIQUE,         -- login name, unique across all tenants
  password_hash TEXT NOT NULL,           -- scrypt$N$r$p$salt$hash (salted; never the password)
  role TEXT NOT NULL CHECK (role IN ('owner','admin','member','guest')), -- role on the tenant
  superuser INTEGER NOT NULL DEFAULT 0 CHECK (superuser IN (0,1)), -- 1: may create tenants
  created_at TEXT NOT NULL               -- RFC 3339 creation time
);

CREATE TABLE tokens (
  id TEXT PRIMARY KEY,                   -- token id (for logs; the secret itself is never stored)
  token_hash TEXT NOT NULL UNIQUE,       -- hex SHA-256 of the bearer token
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE, -- whose token
  created_at TEXT NOT NULL,              -- RFC 3339 issue time
  expires_at TEXT NOT NULL               -- RFC 3339 expiry; refused after this
);

CREATE TABLE networks (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (n_...)
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE, -- owning tenant
  name TEXT NOT NULL,                    -- network name, unique per tenant
  cidr TEXT NOT NULL,                    -- IPv4 prefix the node addresses come from, e.g. 10.20.0.0/24
  description TEXT NOT NULL DEFAULT '',  -- free text for people
  join_policy TEXT NOT NULL CHECK (join_policy IN ('open','invite','approval')), -- how nodes may join
  max_nodes INTEGER,                     -- upper bound on nodes; NULL: only the CIDR limits
  ipam_cursor INTEGER,                   -- last address handed out (uint32); NULL: none yet
  netmap_version INTEGER NOT NULL DEFAULT 0, -- bumped on every peer-visible node change
  created_at TEXT NOT NULL,              -- RFC 3339 creation time
  UNIQUE (tenant_id, name)
);

CREATE TABLE network_members (
  network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- the network
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,       -- the user
  role TEXT NOT NULL CHECK (role IN ('owner','admin','member','guest')), -- overrides the tenant role here
  PRIMARY KEY (network_id, user_id)
);

CREATE TABLE invites (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (iv_...)
  network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network the invite joins
  code_hash TEXT NOT NULL UNIQUE,        -- hex SHA-256 of the secret code (inv_...)
  role TEXT NOT NULL CHECK (role IN ('owner','admin','member','guest')), -- role the invite grants
  max_uses INTEGER,                      -- NULL: unlimited
  uses INTEGER NOT NULL DEFAULT 0,       -- successful registrations with this invite
  expires_at TEXT NOT NULL,              -- RFC 3339; refused after this
  revoked_at TEXT,                       -- RFC 3339 when revoked; NULL: live
  created_at TEXT NOT NULL,              -- RFC 3339 creation time
  created_by TEXT NOT NULL               -- user id of the creator (kept after the user is deleted)
);

CREATE TABLE auth_keys (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (ak_...)
  network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network the key joins
  key_hash TEXT NOT NULL UNIQUE,         -- hex SHA-256 of the secret key (mkey_...)
  prefix TEXT NOT NULL,                  -- first characters of the key, to recognise it in lists
  reusable INTEGER NOT NULL CHECK (reusable IN (0,1)),         -- 0: single use
  ephemeral INTEGER NOT NULL CHECK (ephemeral IN (0,1)),       -- 1: nodes are removed when gone
  pre_approved INTEGER NOT NULL CHECK (pre_approved IN (0,1)), -- 1: skip approval
  tags TEXT NOT NULL DEFAULT '[]',       -- JSON array of tag:name given to its nodes
  uses INTEGER NOT NULL DEFAULT 0,       -- successful registrations with this key
  expires_at TEXT NOT NULL,              -- RFC 3339; refused after this
  revoked_at TEXT,                       -- RFC 3339 when revoked; NULL: live
  created_at TEXT NOT NULL,              -- RFC 3339 creation time
  created_by TEXT NOT NULL               -- user id of the creator
);

CREATE TABLE nodes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (nd_...)
  network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network of the node
  name TEXT NOT NULL,                    -- node name, unique per network
  hostname TEXT NOT NULL DEFAULT '',     -- reported host name
  os TEXT NOT NULL DEFAULT '',           -- reported operating system
  public_key TEXT NOT NULL,              -- WireGuard public key, unique per network
  address INTEGER NOT NULL,              -- mesh IPv4 address as uint32, unique per network
  credential_hash TEXT NOT NULL UNIQUE,  -- hex SHA-256 of the node credential (mnode_...)
  status TEXT NOT NULL CHECK (status IN ('pending','active','disabled')), -- peers see active only
  last_seen TEXT,                        -- RFC 3339 last contact; NULL: never connected
  endpoints TEXT NOT NULL DEFAULT '[]',  -- JSON array of host:port candidates
  tags TEXT NOT NULL DEFAULT '[]',       -- JSON array of tag:name
  ephemeral INTEGER NOT NULL DEFAULT 0 CHECK (ephemeral IN (0,1)), -- 1: removed when offline too long
  created_at TEXT NOT NULL,              -- RFC 3339 registration time
  UNIQUE (network_id, name),
  UNIQUE (network_id, public_key),
  UNIQUE (network_id, address)
);
CREATE INDEX nodes_ephemeral ON nodes (ephemeral) WHERE ephemeral = 1;

CREATE TABLE netmap_changes (
  network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network whose map changed
  version INTEGER NOT NULL,              -- the netmap version this change produced
  node_id TEXT NOT NULL,                 -- the node that changed (may be gone since)
  PRIMARY KEY (network_id, version)
);

CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- entry number, strictly increasing
  at TEXT NOT NULL,                      -- RFC 3339 time of the change
  tenant_id TEXT,                        -- tenant the change belongs to (no FK: outlives it)
  actor TEXT NOT NULL,                   -- user:<id>, node:<id> or system
  actor_name TEXT NOT NULL,              -- user name or node name at the time
  action TEXT NOT NULL,                  -- e.g. network.create, node.register
  target_type TEXT NOT NULL,             -- tenant, user, network, node, invite, authkey, token
  target_id TEXT,                        -- id of the target, when it has one
  network_id TEXT,                       -- network concerned, when there is one
  source_address TEXT,                   -- client IP address of the request
  request_id TEXT,                       -- request id (x-request-id) to find the log lines
  detail TEXT NOT NULL DEFAULT '{}'      -- JSON object with the change's particulars
);
CREATE INDEX audit_tenant ON audit (tenant_id, id);

-- The audit log is append-only: no statement may change or remove an entry.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
`,
  },
  {
    // Counting a network's nodes per registration and per network read was O(nodes); a counter
    // kept by triggers makes both O(1) and cannot drift from the rows.
    name: '0002-network-node-count',
    sql: `
ALTER TABLE networks ADD COLUMN node_count INTEGER NOT NULL DEFAULT 0; -- nodes in the network, kept by triggers
UPDATE networks SET node_count = (SELECT count(*) FROM nodes WHERE nodes.network_id = networks.id);
CREATE TRIGGER nodes_count_insert AFTER INSERT ON nodes
BEGIN UPDATE networks SET node_count = node_count + 1 WHERE id = NEW.network_id; END;
CREATE TRIGGER nodes_count_delete AFTER DELETE ON nodes
BEGIN UPDATE networks SET node_count = node_count - 1 WHERE id = OLD.network_id; END;
`,
  },
  {
    // /readyz proves that a write can commit, not only that the database answers: a full disk
    // must take the controller out of a load balancer. One row, rewritten by each probe.
    name: '0003-readiness-probe',
    sql: `
CREATE TABLE readiness_probe (
  id INTEGER PRIMARY KEY CHECK (id = 1), -- the one row
  probed_at TEXT NOT NULL,               -- RFC 3339 time of the last write probe that committed
  headroom BLOB                          -- random bytes each probe rewrites (see SqliteStore.ping)
);
INSERT INTO readiness_probe (id, probed_at) VALUES (1, '1970-01-01T00:00:00.000Z');
`,
  },
  {
    // NAT traversal: the public mapping the controller observed for a node's WireGuard socket on
    // its endpoint-discovery port, kept apart from the endpoints the node reports so that a
    // report never erases it.
    name: '0004-observed-endpoint',
    sql: `
ALTER TABLE nodes ADD COLUMN observed_endpoint TEXT; -- host:port seen on the discovery port; NULL when none yet
`,
  },
  {
    // NAT traversal reporting: the current path of each pair of nodes (merged from what both
    // report; controller/connections.ts) and a bounded log of path changes. A pair with no working
    // path has no row: the table holds at most the pairs that are connected now. The log keeps
    // the newest CONNECTION_LOG_KEEP entries per network (sqlite-store.ts), so a flapping pair
    // cannot fill the disk.
    name: '0005-connections',
    sql: `
CREATE TABLE connections (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network of both nodes
  node_a TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE, -- the node with the smaller id
  node_b TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE, -- the node with the larger id
  path TEXT NOT NULL CHECK (path IN ('direct','relay')), -- merged path of the pair
  latency_ms REAL,                       -- round trip on path in ms; NULL when not measured
  endpoint_a TEXT,                       -- endpoint a's WireGuard uses for b; NULL when none
  endpoint_b TEXT,                       -- endpoint b's WireGuard uses for a; NULL when none
  since TEXT NOT NULL,                   -- RFC 3339 time the pair got this path
  updated_at TEXT NOT NULL,              -- RFC 3339 time of the last write to the row
  CHECK (node_a < node_b),
  UNIQUE (network_id, node_a, node_b)
);
CREATE INDEX connections_node_b ON connections (network_id, node_b);

CREATE TABLE connection_log (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- entry number, strictly increasing
  network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network of both nodes
  node_a TEXT NOT NULL,                  -- the node with the smaller id (no FK: outlives the node)
  node_b TEXT NOT NULL,                  -- the node with the larger id (no FK: outlives the node)
  event TEXT NOT NULL CHECK (event IN ('connected','disconnected','upgraded_to_direct','fell_back_to_relay')), -- what happened
  from_path TEXT NOT NULL CHECK (from_path IN ('direct','relay','none')), -- merged path before
  to_path TEXT NOT NULL CHECK (to_path IN ('direct','relay','none')),     -- merged path after
  latency_ms REAL,                       -- round trip on to_path in ms; NULL when not measured
  at TEXT NOT NULL                       -- RFC 3339 time of the change
);
CREATE INDEX connection_log_network ON connection_log (network_id, seq);
`,
  },
  {
    // Controller replicas (PostgreSQL): the change log keeps each change's kind (added, changed,
    // removed: another replica needs it to tell admins), and shared presence. SQLite runs one
    // controller process, which keeps presence in memory and needs no notifications; the
    // presence table is created so that both backends have the same schema under one version.
    name: '0006-replicas',
    sql: `
ALTER TABLE netmap_changes ADD COLUMN kind TEXT CHECK (kind IN ('added','changed','removed')); -- NULL in rows older than this migration
CREATE TABLE presence (
  node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE, -- the connected node
  replica TEXT NOT NULL,                 -- id of the controller process holding its session(s)
  since TEXT NOT NULL,                   -- RFC 3339 time the replica's first session opened
  expires_at TEXT NOT NULL,              -- RFC 3339; the row counts as gone after this
  PRIMARY KEY (node_id, replica)
);
CREATE INDEX presence_replica ON presence (replica);
CREATE INDEX presence_expires ON presence (expires_at);

-- Failed-login limits shared by the replicas (controller/auth/login-limits.ts); times are
-- milliseconds since the epoch from the controllers' clocks.
CREATE TABLE login_windows (
  source TEXT PRIMARY KEY,   -- client address
  started_ms INTEGER NOT NULL,            -- start of its current one-minute window
  failures INTEGER NOT NULL              -- attempts charged in that window
);
CREATE TABLE login_buckets (
  username TEXT PRIMARY KEY, -- the user name tried (existing or not)
  tokens REAL NOT NULL,      -- attempts left at at_ms
  at_ms INTEGER NOT NULL                  -- when tokens was computed
);
CREATE TABLE login_trusted (
  username TEXT NOT NULL,    -- a user that logged in with the right password
  source TEXT NOT NULL,      -- from this address
  until_ms INTEGER NOT NULL,              -- trusted until then
  PRIMARY KEY (username, source)
);
`,
  },
  {
    // Relays shared by controller replicas (issue 9): relay keys in the database instead of
    // DATA_DIR/relay-keys.json, the relays that heartbeat (stand-alone ones, and each replica's
    // built-in relay) with an expiry their heartbeats push forward, and one settings row per
    // deployment-wide value (the relay-mesh secret). SQLite gets the same tables so that both
    // backends have one schema under one version.
    name: '0007-relays',
    sql: `
CREATE TABLE relay_keys (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (rk_...)
  name TEXT NOT NULL,                    -- label people give the key
  region TEXT NOT NULL,                  -- region the relays registering with it are listed under
  key_hash TEXT NOT NULL UNIQUE,         -- hex SHA-256 of the secret key (mrelay_...)
  prefix TEXT NOT NULL,                  -- first characters of the key, to recognise it
  created_by TEXT,                       -- user id; NULL when imported from relay-keys.json
  created_at TEXT NOT NULL,              -- RFC 3339 creation time
  revoked_at TEXT                        -- RFC 3339 when revoked; NULL: live
);

CREATE TABLE relays (
  url TEXT PRIMARY KEY,                  -- the relay's URL, as nodes and other relays dial it
  kind TEXT NOT NULL CHECK (kind IN ('standalone','builtin')), -- mesh relay start, or a controller replica's own
  region TEXT NOT NULL,                  -- region it is listed under
  key_id TEXT REFERENCES relay_keys(id) ON DELETE CASCADE, -- the key it registered with; NULL for built-in relays
  connected INTEGER NOT NULL DEFAULT 0,  -- nodes connected to it at its last heartbeat
  first_seen TEXT NOT NULL,              -- RFC 3339 time of its first heartbeat (in this row's life)
  last_seen TEXT NOT NULL,               -- RFC 3339 time of its last heartbeat
  expires_at TEXT NOT NULL               -- RFC 3339; no longer listed after this (last heartbeat + TTL)
);
CREATE INDEX relays_expires ON relays (expires_at);

CREATE TABLE settings (
  name TEXT PRIMARY KEY,                 -- setting name, e.g. relay_mesh_secret
  value TEXT NOT NULL,                   -- its value
  created_at TEXT NOT NULL               -- RFC 3339 time it was first written
);
`,
  },
  {
    // Path state shared by controller replicas: each side's own view of the pair, next to the
    // merged path, so the replica holding a's session and the one holding b's each write their
    // side and merge from both stored sides inside the write (controller/domain/connection-log.ts).
    // Rows written before this keep their merged state and have no sides (neither reports).
    name: '0008-connection-sides',
    sql: `
ALTER TABLE connections ADD COLUMN a_path TEXT CHECK (a_path IN ('direct','relay','none')); -- a's own view of its peer; NULL: a does not report (and in rows older than 0008)
ALTER TABLE connections ADD COLUMN a_latency_ms REAL; -- round trip a measured on a_path, in ms; NULL when not measured
ALTER TABLE connections ADD COLUMN a_endpoint TEXT; -- endpoint a's WireGuard uses for its peer while a_path is direct; else NULL
ALTER TABLE connections ADD COLUMN a_replica TEXT; -- controller replica that wrote a's side (it held a's netmap session)
ALTER TABLE connections ADD COLUMN a_at TEXT; -- RFC 3339 time a's side was written
ALTER TABLE connections ADD COLUMN b_path TEXT CHECK (b_path IN ('direct','relay','none')); -- b's own view of its peer; NULL: b does not report (and in rows older than 0008)
ALTER TABLE connections ADD COLUMN b_latency_ms REAL; -- round trip b measured on b_path, in ms; NULL when not measured
ALTER TABLE connections ADD COLUMN b_endpoint TEXT; -- endpoint b's WireGuard uses for its peer while b_path is direct; else NULL
ALTER TABLE connections ADD COLUMN b_replica TEXT; -- controller replica that wrote b's side (it held b's netmap session)
ALTER TABLE connections ADD COLUMN b_at TEXT; -- RFC 3339 time b's side was written
`,
  },
  {
    // NAT behaviour (issues 7 and 9): the RFC 4787 mapping and filtering a node's netcheck
    // measured, stored with the node like its observed endpoint, so that peers on every
    // controller replica (and after a restart) get it in the node's peer entry. Two columns
    // rather than one text: each is checked against its own RFC 4787 names (a value no netcheck
    // can produce is refused by the database, not only by the frame schema), they read back
    // without parsing, and both are set together or both NULL (controller/domain/nodes.ts
    // setNodeNat; the second column's CHECK says so, as SQLite cannot add a table constraint).
    name: '0009-node-nat',
    sql: `
ALTER TABLE nodes ADD COLUMN nat_mapping TEXT CHECK (nat_mapping IN ('endpoint-independent','address-dependent','address-and-port-dependent','endpoint-dependent','unknown')); -- RFC 4787 mapping the node reported; NULL when it reported none
ALTER TABLE nodes ADD COLUMN nat_filtering TEXT CHECK (nat_filtering IN ('endpoint-independent','address-dependent','address-and-port-dependent','unknown') AND (nat_mapping IS NULL) = (nat_filtering IS NULL)); -- RFC 4787 filtering the node reported; NULL when it reported none (then nat_mapping is NULL too)
`,
  },
  {
    // PostgreSQL's NOTIFY of connection-log entries to other replicas. SQLite is one process,
    // whose admin event stream hears its own entries, so nothing changes here; the migration is
    // recorded so that both backends count the same schema versions.
    name: '0010-connection-notify',
    sql: `SELECT 1;`,
  },
  {
    // The audit log becomes tamper-evident (issue 10): every entry written from now on is a
    // link of its tenant's hash chain (controller/domain/audit.ts): its number in the chain, the
    // hash of the link before it and its own hash over both and every stored field. A unique
    // index on (chain, chain_seq) makes a forked chain (two links with one number) impossible
    // whatever a writer does. Entries from before this migration have no chain (NULL) and are
    // counted as "before the chain" by verification.
    name: '0011-audit-chain',
    sql: `
ALTER TABLE audit ADD COLUMN chain TEXT; -- the chain the entry is a link of: its tenant id, '' for entries of no tenant; NULL before 0011
ALTER TABLE audit ADD COLUMN chain_seq INTEGER; -- its number in the chain, from 1 without gaps; NULL before 0011
ALTER TABLE audit ADD COLUMN prev_hash TEXT; -- hex SHA-256 of the link before it ('' for the first); NULL before 0011
ALTER TABLE audit ADD COLUMN hash TEXT; -- hex SHA-256 over prev_hash, chain_seq and every stored field; NULL before 0011
CREATE UNIQUE INDEX audit_chain ON audit (chain, chain_seq);
`,
  },
  {
    // ACL policy (issue 10): who owns a node, and one policy document per tenant. The owner is
    // the user who let the node in: the user whose token registered it, or the creator of the
    // invite or auth key it used (NULL for nodes from before, and when that is unknown); a policy
    // names people, and this is how "alice" becomes alice's nodes. No foreign key: like
    // created_by elsewhere, it outlives the user (what happens to a removed user's nodes is the
    // domain's decision). A tenant without a row in `policies` has no policy: every node of a
    // network may reach every other, as before.
    name: '0012-acl-policy',
    sql: `
ALTER TABLE nodes ADD COLUMN owner_id TEXT; -- user id of the person who let the node in; NULL when unknown (and before 0012)
CREATE INDEX nodes_owner ON nodes (owner_id);

CREATE TABLE policies (
  tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE, -- the tenant the policy governs
  document TEXT NOT NULL,                -- the policy as its author wrote it (JSON with comments)
  version INTEGER NOT NULL,              -- 1 for the first policy, +1 per change
  updated_at TEXT NOT NULL,              -- RFC 3339 time of the last change
  updated_by TEXT NOT NULL               -- user id of who made it
);
`,
  },
  {
    // PostgreSQL's NOTIFY of policy changes to other replicas. SQLite is one process, whose
    // netmap hub hears its own changes through the in-process feed, so nothing changes here; the
    // migration is recorded so that both backends count the same schema versions.
    name: '0013-policy-notify',
    sql: `SELECT 1;`,
  },
  {
    // Short-lived access tokens with rotating refresh tokens, sessions, and TOTP MFA (issue 10).
    // A login is a session (a token family): its access tokens are rows of \`tokens\` that name
    // it, its refresh tokens rows of \`refresh_tokens\`, each exchanged once. Tokens from before
    // keep session_id NULL and work as before until their own 30-day expiry. The TOTP secret is
    // stored as such (verifying a code needs it); recovery codes only as hashes.
    name: '0014-tokens-mfa',
    sql: `

CREATE TABLE sessions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, for listing
  id TEXT NOT NULL UNIQUE,               -- public id (ses_...)
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE, -- whose login
  created_at TEXT NOT NULL,              -- RFC 3339 time of the login
  last_used_at TEXT NOT NULL,            -- RFC 3339 time of the last refresh (the login when none)
  expires_at TEXT NOT NULL,              -- RFC 3339 expiry of its current refresh token; pushed on by each refresh (sliding)
  source_address TEXT,                   -- client address of the login or the last refresh
  revoked_at TEXT,                       -- RFC 3339 time of revocation (logout, revoke, reuse); NULL while live
  revoked_reason TEXT CHECK (revoked_reason IN ('logout','revoked','reuse')) -- why it was revoked
);
CREATE INDEX sessions_user ON sessions (user_id);

ALTER TABLE tokens ADD COLUMN session_id TEXT REFERENCES sessions(id) ON DELETE CASCADE; -- the session (token family) of an access token; NULL for a token from before 0014 (valid until its expires_at, as then)
CREATE INDEX tokens_session ON tokens (session_id);

CREATE TABLE refresh_tokens (
  token_hash TEXT PRIMARY KEY,           -- hex SHA-256 of the refresh token (never the token)
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE, -- its family
  created_at TEXT NOT NULL,              -- RFC 3339 issue time
  expires_at TEXT NOT NULL,              -- RFC 3339 expiry
  retired_at TEXT,                       -- RFC 3339 time it was exchanged; NULL: the family's current one
  retired_by TEXT                        -- client address of the exchange (tells a client's own race from a replay)
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE user_mfa (
  user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE, -- the account
  secret TEXT NOT NULL,                  -- TOTP secret, base32 (RFC 6238 needs it to verify codes)
  created_at TEXT NOT NULL,              -- RFC 3339 time the secret was made
  enabled_at TEXT,                       -- RFC 3339 time it was confirmed with a code; NULL: pending, not asked at login
  last_step INTEGER                      -- the newest 30 s time step whose code was accepted; codes of it or older are refused (replay)
);

CREATE TABLE mfa_recovery_codes (
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE, -- the account
  code_hash TEXT NOT NULL,               -- hex SHA-256 of the recovery code (shown once, never stored)
  created_at TEXT NOT NULL,              -- RFC 3339 time it was made
  used_at TEXT,                          -- RFC 3339 time it was used; NULL: still usable
  PRIMARY KEY (user_id, code_hash)
);
`,
  },
  {
    // People join tenants by invite, and the moderator role (issue 10). SQLite cannot change a
    // CHECK constraint in place, so the three tables whose role CHECK lists the roles are rebuilt
    // (https://sqlite.org/lang_altertable.html#otheralter: new table, copy, drop, rename) with
    // foreign keys off for the migration (foreignKeysOff below): with them on, dropping \`users\`
    // would cascade to every token, session and membership. Rows, ids and AUTOINCREMENT counters
    // are kept; foreign_key_check must come back empty before the transaction commits.
    name: '0015-user-invites',
    foreignKeysOff: true,
    sql: `
CREATE TABLE users_0015 (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (u_...)
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE, -- the tenant the user belongs to
  username TEXT NOT NULL UNIQUE,         -- login name, unique across all tenants
  password_hash TEXT NOT NULL,           -- scrypt$N$r$p$salt$hash (salted; never the password)
  role TEXT NOT NULL CHECK (role IN ('owner','admin','moderator','member','guest')), -- role on the tenant
  superuser INTEGER NOT NULL DEFAULT 0 CHECK (superuser IN (0,1)), -- 1: may create tenants
  created_at TEXT NOT NULL               -- RFC 3339 creation time
);
INSERT INTO users_0015 (seq, id, tenant_id, username, password_hash, role, superuser, created_at)
  SELECT seq, id, tenant_id, username, password_hash, role, superuser, created_at FROM users;
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'users') WHERE name = 'users_0015';
DROP TABLE users;
ALTER TABLE users_0015 RENAME TO users;

CREATE TABLE network_members_0015 (
  network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- the network
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,       -- the user
  role TEXT NOT NULL CHECK (role IN ('owner','admin','moderator','member','guest')), -- overrides the tenant role here
  PRIMARY KEY (network_id, user_id)
);
INSERT INTO network_members_0015 (network_id, user_id, role) SELECT network_id, user_id, role FROM network_members;
DROP TABLE network_members;
ALTER TABLE network_members_0015 RENAME TO network_members;

CREATE TABLE invites_0015 (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (iv_...)
  network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network the invite joins
  code_hash TEXT NOT NULL UNIQUE,        -- hex SHA-256 of the secret code (inv_...)
  role TEXT NOT NULL CHECK (role IN ('owner','admin','moderator','member','guest')), -- role the invite grants
  max_uses INTEGER,                      -- NULL: unlimited
  uses INTEGER NOT NULL DEFAULT 0,       -- successful registrations with this invite
  expires_at TEXT NOT NULL,              -- RFC 3339; refused after this
  revoked_at TEXT,                       -- RFC 3339 when revoked; NULL: live
  created_at TEXT NOT NULL,              -- RFC 3339 creation time
  created_by TEXT NOT NULL               -- user id of the creator (kept after the user is deleted)
);
INSERT INTO invites_0015 (seq, id, network_id, code_hash, role, max_uses, uses, expires_at, revoked_at, created_at, created_by)
  SELECT seq, id, network_id, code_hash, role, max_uses, uses, expires_at, revoked_at, created_at, created_by FROM invites;
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'invites') WHERE name = 'invites_0015';
DROP TABLE invites;
ALTER TABLE invites_0015 RENAME TO invites;

CREATE TABLE user_invites (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order, used for pagination cursors
  id TEXT NOT NULL UNIQUE,               -- public id (uiv_...)
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE, -- the tenant a person joins with it
  code_hash TEXT NOT NULL UNIQUE,        -- hex SHA-256 of the secret code (uinv_...); the code is shown once
  role TEXT NOT NULL CHECK (role IN ('owner','admin','moderator','member','guest')), -- tenant role of the accounts made with it
  max_uses INTEGER,                      -- NULL: unlimited
  uses INTEGER NOT NULL DEFAULT 0,       -- accounts made with this invite
  expires_at TEXT NOT NULL,              -- RFC 3339; refused after this
  revoked_at TEXT,                       -- RFC 3339 when revoked; NULL: live
  created_at TEXT NOT NULL,              -- RFC 3339 creation time
  created_by TEXT NOT NULL               -- user id of the creator (kept after the user is deleted)
);
CREATE INDEX user_invites_tenant ON user_invites (tenant_id, seq);
`,
  },
  {
    // Node key expiry (issue 10). A tenant's default key lifetime in days (0: keys never expire)
    // sets a node's key_expires_at at registration and at each key rotation; NULL: the key never
    // expires (nodes from before this migration, tagged nodes, and nodes an admin extended with
    // --never). The expiry sweep (controller/key-expiry.ts) disables a node whose key expired
    // (status 'disabled': peers drop it, its sessions close) and stamps key_warned_at when it
    // first warns of the coming expiry; an extension or a rotation clears it.
    name: '0016-node-key-expiry',
    sql: `
ALTER TABLE tenants ADD COLUMN node_key_days INTEGER NOT NULL DEFAULT 180 CHECK (node_key_days BETWEEN 0 AND 3650); -- default node key lifetime in days; 0: never
ALTER TABLE nodes ADD COLUMN key_expires_at TEXT; -- RFC 3339 time the node's key expires; NULL: never
ALTER TABLE nodes ADD COLUMN key_warned_at TEXT; -- RFC 3339 time the coming expiry was first announced; NULL: not yet
CREATE INDEX nodes_key_expiry ON nodes (key_expires_at) WHERE key_expires_at IS NOT NULL;
`,
  },
  {
    // OIDC login (issue 10). A person's identity at an OpenID provider (issuer + subject) names
    // one user: found there on every later login, unique on (issuer, subject). Its group claim
    // is kept, as it came with the last login, for tenant-role mapping and policy groups.
    // oidc_flows holds the controller's half of a login in progress (state, nonce, PKCE
    // verifier; a device code), keyed by the hash of the handle the CLI holds, so that any
    // replica can finish it; rows go once used or expired.
    name: '0017-oidc',
    sql: `

CREATE TABLE user_identities (
  issuer TEXT NOT NULL,                  -- the provider's issuer identifier (the ID token's iss)
  subject TEXT NOT NULL,                 -- the ID token's sub at that issuer
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE, -- the user it logs in as
  provider TEXT NOT NULL,                -- name of the configured issuer it came through
  email TEXT,                            -- the email claim at the last login, if any
  groups TEXT NOT NULL DEFAULT '[]',     -- JSON array of the group claim at the last login
  created_at TEXT NOT NULL,              -- RFC 3339 time of the first login
  last_login_at TEXT NOT NULL,           -- RFC 3339 time of the last login
  PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

CREATE TABLE oidc_flows (
  id_hash TEXT PRIMARY KEY,              -- hex SHA-256 of the flow handle given to the client (never the handle)
  kind TEXT NOT NULL CHECK (kind IN ('code','device')), -- authorization code with PKCE, or device authorization
  provider TEXT NOT NULL,                -- name of the configured issuer
  data TEXT NOT NULL,                    -- JSON: state, nonce, PKCE verifier, redirect URI; or device code and poll interval
  created_at TEXT NOT NULL,              -- RFC 3339 start
  expires_at TEXT NOT NULL,              -- RFC 3339 time it is swept
  next_poll_at TEXT                      -- device flows: RFC 3339 time before which the provider is not asked again
);
CREATE INDEX oidc_flows_expires ON oidc_flows (expires_at);
`,
  },
  {
    // OIDC logins in progress remember the address that started them, so that one address may
    // hold only so many at once (domain/identities.ts OIDC_FLOWS_PER_SOURCE): a start writes a
    // row and, for the device flow, asks the provider, all without authentication. (PostgreSQL
    // also notifies other replicas of IdP group changes here; SQLite, one process, needs not.)
    name: '0018-oidc-source-groups',
    sql: `
ALTER TABLE oidc_flows ADD COLUMN source TEXT; -- the client address that started the flow; null when unknown
CREATE INDEX oidc_flows_source ON oidc_flows (source, expires_at) WHERE source IS NOT NULL;
`,
  },
  {
    // TOTP secrets sealed at rest (issue 10). No column changes: user_mfa.secret now holds
    // `v1:<key id>:<nonce>:<ciphertext>` (controller/auth/secrets-key.ts), sealed at start with the
    // controller's secrets key, which SQL has not got. The migration is here so that an older
    // mesh refuses this database (DATABASE_NEWER_THAN_BINARY) rather than read a sealed secret as
    // base32.
    name: '0019-sealed-mfa-secrets',
    sql: `
-- user_mfa.secret: v1:<key id>:<nonce>:<AES-256-GCM ciphertext and tag>, sealed with the secrets key
`,
  },
]

/**
 * Applies pending migrations. `known` is injectable so tests can play an older binary.
 * Throws DATABASE_NEWER_THAN_BINARY when the database lists an unknown migration.
 */
export async function migrate(
  db: Database.Database,
  known: readonly Migration[] = MIGRATIONS,
): Promise<{applied: string[]}> {
  db.exec(`CREATE TABLE IF NOT EXISTS migrations (
    name TEXT PRIMARY KEY,   -- migration name, e.g. 0001-initial
    applied_at TEXT NOT NULL -- RFC 3339 time it was applied
  )`)
  const executed = (db.prepare('SELECT name FROM migrations ORDER BY name').all() as {name: string}[]).map(
    (r) => r.name,
  )
  const knownNames = new Set(known.map((m) => m.name))
  const unknown = executed.filter((n) => !knownNames.has(n))
  if (unknown.length > 0) {
    throw new MeshError('DATABASE_NEWER_THAN_BINARY', {
      message: `the database has migration ${unknown.join(', ')} that this mesh does not know`,
      detail: {unknown},
    })
  }
  const record = db.prepare('INSERT OR IGNORE INTO migrations (name, applied_at) VALUES (?, ?)')
  // The migration's own up() records it inside the same transaction; logMigration is then a
  // no-op that stays correct if umzug calls it.
  const storage: UmzugStorage = {
    executed: async () =>
      (db.prepare('SELECT name FROM migrations ORDER BY name').all() as {name: string}[]).map((r) => r.name),
    logMigration: async ({name}) => {
      record.run(name, new Date().toISOString())
    },
    unlogMigration: async () => {
      throw new Error('migrations are append-only; there is no down')
    },
  }
  const umzug = new Umzug({
    migrations: known.map((m) => ({
      name: m.name,
      up: async () => {
        const fkOff = m.foreignKeysOff === true && db.pragma('foreign_keys', {simple: true}) === 1
        if (fkOff) db.pragma('foreign_keys = OFF')
        try {
          db.transaction(() => {
            db.exec(m.sql)
            if (m.foreignKeysOff) {
              const broken = db.pragma('foreign_key_check') as unknown[]
              if (broken.length > 0) {
                throw new Error(
                  `${m.name}: ${broken.length} rows break a foreign key: ${JSON.stringify(broken.slice(0, 3))}`,
                )
              }
            }
            record.run(m.name, new Date().toISOString())
          })()
        } finally {
          if (fkOff) db.pragma('foreign_keys = ON')
        }
      },
    })),
    storage,
    logger: undefined,
  })
  const applied = await umzug.up()
  return {applied: applied.map((m) => m.name)}
}
