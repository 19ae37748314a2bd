/**
 * The PostgreSQL schema as an append-only list of migrations: the SQLite schema
 * (../sqlite/migrations.ts) translated, migration for migration, under the same names, so a
 * schema version means the same on both backends.
 *
 * Rules (as for SQLite): never edit or reorder a shipped migration; add a new one at the end, on
 * both backends, under the same name. Each migration runs in one transaction together with its
 * row in `migrations`. A database that lists a migration this binary does not know was written
 * by a newer mesh: start-up refuses it (DATABASE_NEWER_THAN_BINARY).
 *
 * Several controller replicas may start at once on one database: the whole run (creating the
 * `migrations` table, the newer-than-binary check, every migration) holds a session advisory
 * lock (MIGRATION_LOCK), so one replica migrates and the others wait, then find nothing to do.
 *
 * How the types translate, and why they stay close to SQLite's:
 *  - seq / id counters: BIGINT GENERATED ALWAYS AS IDENTITY (never reused, like AUTOINCREMENT).
 *    Under concurrent writers an identity is taken at insert, not at commit, so a reader paging
 *    "seq > cursor" can see 12 before 11 commits: fine for listings, not for a tail that must
 *    never miss a row (netmap_changes orders by version, which the network row lock serializes).
 *  - Every TEXT column is COLLATE "C": SQLite compares text byte by byte (BINARY), and so must
 *    PostgreSQL whatever the database's default collation. With en-US, 'nd_B' < 'nd_a' is false
 *    (ids are base64url: both cases, '-' and '_'), which would make CHECK (node_a < node_b) refuse
 *    pairs that the domain layer ordered with JavaScript's <, and ORDER BY username differ
 *    between backends. Equality and UNIQUE do not depend on it.
 *  - Times stay RFC 3339 TEXT, JSON stays TEXT and flags stay INTEGER 0/1 with the same CHECKs:
 *    rows read back the same on both backends (one row mapping, one contract suite, and a
 *    row-for-row copy from SQLite to PostgreSQL), and the ISO strings sort as times.
 *  - uint32 addresses and the IPAM cursor are BIGINT (PostgreSQL's INTEGER is signed 32-bit)
 *    with the range checked; open.ts reads BIGINT back as a JavaScript number.
 *  - REAL (8 bytes in SQLite) is DOUBLE PRECISION (PostgreSQL's REAL has 4); BLOB is BYTEA.
 *  - Triggers become PL/pgSQL trigger functions.
 */
import type pg from 'pg'
import {Umzug, type UmzugStorage} from 'umzug'
import {MeshError} from '../../../shared/errors.js'

export interface Migration {
  readonly name: string
  readonly sql: string
}

/**
 * The advisory lock key (two int4s) held while migrating: 'mesh' in ASCII, then 1 for
 * migrations. Other replica-wide locks take the same first key and another second one.
 * Advisory locks are per database, so two mesh databases on one server do not contend.
 */
export const MIGRATION_LOCK: readonly [number, number] = [0x6d657368, 1]

export const MIGRATIONS: readonly Migration[] = [
  {
    name: '0001-initial',
    sql: `
CREATE TABLE tenants (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, used for pagination cursors
  id TEXT COLLATE "C" NOT NULL UNIQUE,   -- public id (t_...)
  name TEXT COLLATE "C" NOT NULL UNIQUE, -- tenant name, unique across the controller
  created_at TEXT COLLATE "C" NOT NULL   -- RFC 3339 creation time
);

CREATE TABLE users (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, used for pagination cursors
  id TEXT COLLATE "C" NOT NULL UNIQUE,   -- public id (u_...)
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE, -- the tenant the user belongs to
  username TEXT COLLATE "C" NOT NULL UNIQUE, -- login name, unique across all tenants
  password_hash TEXT COLLATE "C" NOT NULL, -- scrypt$N$r$p$salt$hash (salted; never the password)
  role TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner','admin','member','guest')), -- role on the tenant
  superuser INTEGER NOT NULL DEFAULT 0 CHECK (superuser IN (0,1)), -- 1: may create tenants
  created_at TEXT COLLATE "C" NOT NULL   -- RFC 3339 creation time
);

CREATE TABLE tokens (
  id TEXT COLLATE "C" PRIMARY KEY,       -- token id (for logs; the secret itself is never stored)
  token_hash TEXT COLLATE "C" NOT NULL UNIQUE, -- hex SHA-256 of the bearer token
  user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE, -- whose token
  created_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339 issue time
  expires_at TEXT COLLATE "C" NOT NULL   -- RFC 3339 expiry; refused after this
);

CREATE TABLE networks (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, used for pagination cursors
  id TEXT COLLATE "C" NOT NULL UNIQUE,   -- public id (n_...)
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE, -- owning tenant
  name TEXT COLLATE "C" NOT NULL,        -- network name, unique per tenant
  cidr TEXT COLLATE "C" NOT NULL,        -- IPv4 prefix the node addresses come from, e.g. 10.20.0.0/24
  description TEXT COLLATE "C" NOT NULL DEFAULT '', -- free text for people
  join_policy TEXT COLLATE "C" NOT NULL CHECK (join_policy IN ('open','invite','approval')), -- how nodes may join
  max_nodes INTEGER,                     -- upper bound on nodes; NULL: only the CIDR limits
  ipam_cursor BIGINT CHECK (ipam_cursor BETWEEN 0 AND 4294967295), -- last address handed out (uint32); NULL: none yet
  netmap_version BIGINT NOT NULL DEFAULT 0, -- bumped on every peer-visible node change
  created_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339 creation time
  UNIQUE (tenant_id, name)
);

CREATE TABLE network_members (
  network_id TEXT COLLATE "C" NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- the network
  user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,       -- the user
  role TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner','admin','member','guest')), -- overrides the tenant role here
  PRIMARY KEY (network_id, user_id)
);

CREATE TABLE invites (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, used for pagination cursors
  id TEXT COLLATE "C" NOT NULL UNIQUE,   -- public id (iv_...)
  network_id TEXT COLLATE "C" NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network the invite joins
  code_hash TEXT COLLATE "C" NOT NULL UNIQUE, -- hex SHA-256 of the secret code (inv_...)
  role TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner','admin','member','guest')), -- role the invite grants
  max_uses INTEGER,                      -- NULL: unlimited
  uses INTEGER NOT NULL DEFAULT 0,       -- successful registrations with this invite
  expires_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339; refused after this
  revoked_at TEXT COLLATE "C",           -- RFC 3339 when revoked; NULL: live
  created_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339 creation time
  created_by TEXT COLLATE "C" NOT NULL   -- user id of the creator (kept after the user is deleted)
);

CREATE TABLE auth_keys (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, used for pagination cursors
  id TEXT COLLATE "C" NOT NULL UNIQUE,   -- public id (ak_...)
  network_id TEXT COLLATE "C" NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network the key joins
  key_hash TEXT COLLATE "C" NOT NULL UNIQUE, -- hex SHA-256 of the secret key (mkey_...)
  prefix TEXT COLLATE "C" NOT NULL,      -- first characters of the key, to recognise it in lists
  reusable INTEGER NOT NULL CHECK (reusable IN (0,1)),         -- 0: single use
  ephemeral INTEGER NOT NULL CHECK (ephemeral IN (0,1)),       -- 1: nodes are removed when gone
  pre_approved INTEGER NOT NULL CHECK (pre_approved IN (0,1)), -- 1: skip approval
  tags TEXT COLLATE "C" NOT NULL DEFAULT '[]', -- JSON array of tag:name given to its nodes
  uses INTEGER NOT NULL DEFAULT 0,       -- successful registrations with this key
  expires_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339; refused after this
  revoked_at TEXT COLLATE "C",           -- RFC 3339 when revoked; NULL: live
  created_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339 creation time
  created_by TEXT COLLATE "C" NOT NULL   -- user id of the creator
);

CREATE TABLE nodes (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, used for pagination cursors
  id TEXT COLLATE "C" NOT NULL UNIQUE,   -- public id (nd_...)
  network_id TEXT COLLATE "C" NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network of the node
  name TEXT COLLATE "C" NOT NULL,        -- node name, unique per network
  hostname TEXT COLLATE "C" NOT NULL DEFAULT '', -- reported host name
  os TEXT COLLATE "C" NOT NULL DEFAULT '', -- reported operating system
  public_key TEXT COLLATE "C" NOT NULL,  -- WireGuard public key, unique per network
  address BIGINT NOT NULL CHECK (address BETWEEN 0 AND 4294967295), -- mesh IPv4 address as uint32, unique per network
  credential_hash TEXT COLLATE "C" NOT NULL UNIQUE, -- hex SHA-256 of the node credential (mnode_...)
  status TEXT COLLATE "C" NOT NULL CHECK (status IN ('pending','active','disabled')), -- peers see active only
  last_seen TEXT COLLATE "C",            -- RFC 3339 last contact; NULL: never connected
  endpoints TEXT COLLATE "C" NOT NULL DEFAULT '[]', -- JSON array of host:port candidates
  tags TEXT COLLATE "C" NOT NULL DEFAULT '[]', -- JSON array of tag:name
  ephemeral INTEGER NOT NULL DEFAULT 0 CHECK (ephemeral IN (0,1)), -- 1: removed when offline too long
  created_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339 registration time
  UNIQUE (network_id, name),
  UNIQUE (network_id, public_key),
  UNIQUE (network_id, address)
);
CREATE INDEX nodes_ephemeral ON nodes (ephemeral) WHERE ephemeral = 1;

CREATE TABLE netmap_changes (
  network_id TEXT COLLATE "C" NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network whose map changed
  version BIGINT NOT NULL,               -- the netmap version this change produced
  node_id TEXT COLLATE "C" NOT NULL,     -- the node that changed (may be gone since)
  PRIMARY KEY (network_id, version)
);

CREATE TABLE audit (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- entry number, strictly increasing
  at TEXT COLLATE "C" NOT NULL,          -- RFC 3339 time of the change
  tenant_id TEXT COLLATE "C",            -- tenant the change belongs to (no FK: outlives it)
  actor TEXT COLLATE "C" NOT NULL,       -- user:<id>, node:<id> or system
  actor_name TEXT COLLATE "C" NOT NULL,  -- user name or node name at the time
  action TEXT COLLATE "C" NOT NULL,      -- e.g. network.create, node.register
  target_type TEXT COLLATE "C" NOT NULL, -- tenant, user, network, node, invite, authkey, token
  target_id TEXT COLLATE "C",            -- id of the target, when it has one
  network_id TEXT COLLATE "C",           -- network concerned, when there is one
  source_address TEXT COLLATE "C",       -- client IP address of the request
  request_id TEXT COLLATE "C",           -- request id (x-request-id) to find the log lines
  detail TEXT COLLATE "C" NOT NULL DEFAULT '{}' -- JSON object with the change's particulars
);
CREATE INDEX audit_tenant ON audit (tenant_id, id);

-- The audit log is append-only: no statement may change or remove an entry. TRUNCATE, which
-- SQLite does not have and which fires no row trigger, is refused too.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit log is append-only' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
`,
  },
  {
    // Counting a network's nodes per registration and per network read was O(nodes); a counter
    // kept by triggers makes both O(1) and cannot drift from the rows. The update takes the
    // network row's lock, so registrations in one network serialize on it (IPAM does anyway).
    name: '0002-network-node-count',
    sql: `
ALTER TABLE networks ADD COLUMN node_count INTEGER NOT NULL DEFAULT 0; -- nodes in the network, kept by triggers
UPDATE networks SET node_count = (SELECT count(*) FROM nodes WHERE nodes.network_id = networks.id);
CREATE FUNCTION nodes_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE networks SET node_count = node_count + 1 WHERE id = NEW.network_id;
  RETURN NULL;
END;
$$;
CREATE FUNCTION nodes_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE networks SET node_count = node_count - 1 WHERE id = OLD.network_id;
  RETURN NULL;
END;
$$;
CREATE TRIGGER nodes_count_insert AFTER INSERT ON nodes
  FOR EACH ROW EXECUTE FUNCTION nodes_count_insert();
CREATE TRIGGER nodes_count_delete AFTER DELETE ON nodes
  FOR EACH ROW EXECUTE FUNCTION nodes_count_delete();
`,
  },
  {
    // /readyz proves that a write can commit, not only that the database answers: a full disk
    // must take the controller out of a load balancer. One row, rewritten by each probe.
    name: '0003-readiness-probe',
    sql: `
CREATE TABLE readiness_probe (
  id INTEGER PRIMARY KEY CHECK (id = 1), -- the one row
  probed_at TEXT COLLATE "C" NOT NULL,   -- RFC 3339 time of the last write probe that committed
  headroom BYTEA                         -- random bytes each probe rewrites (see SqliteStore.ping)
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
ALTER TABLE nodes ADD COLUMN observed_endpoint TEXT COLLATE "C"; -- host:port seen on the discovery port; NULL when none yet
`,
  },
  {
    // NAT traversal reporting: the current path of each pair of nodes and a bounded log of path
    // changes (see the SQLite migration of the same name).
    name: '0005-connections',
    sql: `
CREATE TABLE connections (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, used for pagination cursors
  network_id TEXT COLLATE "C" NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network of both nodes
  node_a TEXT COLLATE "C" NOT NULL REFERENCES nodes(id) ON DELETE CASCADE, -- the node with the smaller id
  node_b TEXT COLLATE "C" NOT NULL REFERENCES nodes(id) ON DELETE CASCADE, -- the node with the larger id
  path TEXT COLLATE "C" NOT NULL CHECK (path IN ('direct','relay')), -- merged path of the pair
  latency_ms DOUBLE PRECISION,           -- round trip on path in ms; NULL when not measured
  endpoint_a TEXT COLLATE "C",           -- endpoint a's WireGuard uses for b; NULL when none
  endpoint_b TEXT COLLATE "C",           -- endpoint b's WireGuard uses for a; NULL when none
  since TEXT COLLATE "C" NOT NULL,       -- RFC 3339 time the pair got this path
  updated_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339 time of the last write to the row
  CHECK (node_a < node_b),               -- byte order: the columns are COLLATE "C"
  UNIQUE (network_id, node_a, node_b)
);
CREATE INDEX connections_node_b ON connections (network_id, node_b);

CREATE TABLE connection_log (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- entry number, strictly increasing
  network_id TEXT COLLATE "C" NOT NULL REFERENCES networks(id) ON DELETE CASCADE, -- network of both nodes
  node_a TEXT COLLATE "C" NOT NULL,      -- the node with the smaller id (no FK: outlives the node)
  node_b TEXT COLLATE "C" NOT NULL,      -- the node with the larger id (no FK: outlives the node)
  event TEXT COLLATE "C" NOT NULL CHECK (event IN ('connected','disconnected','upgraded_to_direct','fell_back_to_relay')), -- what happened
  from_path TEXT COLLATE "C" NOT NULL CHECK (from_path IN ('direct','relay','none')), -- merged path before
  to_path TEXT COLLATE "C" NOT NULL CHECK (to_path IN ('direct','relay','none')),     -- merged path after
  latency_ms DOUBLE PRECISION,           -- round trip on to_path in ms; NULL when not measured
  at TEXT COLLATE "C" NOT NULL           -- RFC 3339 time of the change
);
CREATE INDEX connection_log_network ON connection_log (network_id, seq);
`,
  },
  {
    // Several controller replicas on one database: every committed netmap change and network
    // change is announced with NOTIFY, from triggers (a netmap change with its kind, added,
    // changed or removed, now kept in the change log), so the announcement commits with the
    // change or not at all (a replica that dies between its commit and a NOTIFY of its own would
    // leave the others stale). Payloads are ids and versions only (NOTIFY holds 8000 bytes)
    // and end with the writing connection's application_name (each replica names its
    // connections after itself), so a replica can tell its own changes from others'; listeners
    // read the rows themselves. Presence: one row per node and replica holding a
    // session, with an expiry the replica keeps pushing forward; a replica that dies stops
    // pushing and its rows expire. On SQLite (one controller process) this migration creates
    // the same presence table, unused, so the two schemas stay alike.
    name: '0006-replicas',
    sql: `
ALTER TABLE netmap_changes ADD COLUMN kind TEXT COLLATE "C" CHECK (kind IN ('added','changed','removed')); -- NULL in rows older than this migration

CREATE FUNCTION mesh_notify_netmap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mesh_netmap', NEW.network_id || ' ' || NEW.version || ' ' || NEW.node_id || ' ' || coalesce(NEW.kind, 'changed') || ' ' || current_setting('application_name'));
  RETURN NULL;
END;
$$;
CREATE TRIGGER netmap_changes_notify AFTER INSERT ON netmap_changes
  FOR EACH ROW EXECUTE FUNCTION mesh_notify_netmap();

CREATE FUNCTION mesh_notify_network() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('mesh_network', 'deleted ' || OLD.id || ' ' || current_setting('application_name'));
  ELSE
    PERFORM pg_notify('mesh_network', lower(TG_OP) || ' ' || NEW.id || ' ' || current_setting('application_name'));
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER networks_notify AFTER INSERT OR DELETE OR UPDATE OF name, description, join_policy, max_nodes
  ON networks FOR EACH ROW EXECUTE FUNCTION mesh_notify_network();

CREATE TABLE presence (
  node_id TEXT COLLATE "C" NOT NULL REFERENCES nodes(id) ON DELETE CASCADE, -- the connected node
  replica TEXT COLLATE "C" NOT NULL,     -- id of the controller process holding its session(s)
  since TEXT COLLATE "C" NOT NULL,       -- RFC 3339 time the replica's first session opened
  expires_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339; the row counts as gone after this
  PRIMARY KEY (node_id, replica)
);
CREATE INDEX presence_replica ON presence (replica);
CREATE INDEX presence_expires ON presence (expires_at);

CREATE FUNCTION mesh_notify_presence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('mesh_presence', 'off ' || OLD.node_id || ' ' || OLD.replica);
  ELSE
    PERFORM pg_notify('mesh_presence', 'on ' || NEW.node_id || ' ' || NEW.replica);
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER presence_notify AFTER INSERT OR DELETE ON presence
  FOR EACH ROW EXECUTE FUNCTION mesh_notify_presence();

-- Failed-login limits shared by the replicas (controller/auth/login-limits.ts); times are
-- milliseconds since the epoch from the controllers' clocks.
CREATE TABLE login_windows (
  source TEXT COLLATE "C" PRIMARY KEY,   -- client address
  started_ms BIGINT NOT NULL,            -- start of its current one-minute window
  failures INTEGER NOT NULL              -- attempts charged in that window
);
CREATE TABLE login_buckets (
  username TEXT COLLATE "C" PRIMARY KEY, -- the user name tried (existing or not)
  tokens DOUBLE PRECISION NOT NULL,      -- attempts left at at_ms
  at_ms BIGINT NOT NULL                  -- when tokens was computed
);
CREATE TABLE login_trusted (
  username TEXT COLLATE "C" NOT NULL,    -- a user that logged in with the right password
  source TEXT COLLATE "C" NOT NULL,      -- from this address
  until_ms BIGINT NOT NULL,              -- trusted until then
  PRIMARY KEY (username, source)
);
`,
  },
  {
    // Relays shared by controller replicas (issue 9): relay keys in the database instead of
    // DATA_DIR/relay-keys.json, the relays that heartbeat (stand-alone ones, and each replica's
    // built-in relay) with an expiry their heartbeats push forward, and one settings row per
    // deployment-wide value (the relay-mesh secret). SQLite gets the same tables so that both
    // backends have one schema under one version. PostgreSQL also NOTIFYs (mesh_relays) when the
    // list changes.
    name: '0007-relays',
    sql: `
CREATE TABLE relay_keys (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, used for pagination cursors
  id TEXT COLLATE "C" NOT NULL UNIQUE,               -- public id (rk_...)
  name TEXT COLLATE "C" NOT NULL,                    -- label people give the key
  region TEXT COLLATE "C" NOT NULL,                  -- region the relays registering with it are listed under
  key_hash TEXT COLLATE "C" NOT NULL UNIQUE,         -- hex SHA-256 of the secret key (mrelay_...)
  prefix TEXT COLLATE "C" NOT NULL,                  -- first characters of the key, to recognise it
  created_by TEXT COLLATE "C",                       -- user id; NULL when imported from relay-keys.json
  created_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 creation time
  revoked_at TEXT COLLATE "C"                        -- RFC 3339 when revoked; NULL: live
);

CREATE TABLE relays (
  url TEXT COLLATE "C" PRIMARY KEY,                  -- the relay's URL, as nodes and other relays dial it
  kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('standalone','builtin')), -- mesh relay start, or a controller replica's own
  region TEXT COLLATE "C" NOT NULL,                  -- region it is listed under
  key_id TEXT COLLATE "C" REFERENCES relay_keys(id) ON DELETE CASCADE, -- the key it registered with; NULL for built-in relays
  connected INTEGER NOT NULL DEFAULT 0,  -- nodes connected to it at its last heartbeat
  first_seen TEXT COLLATE "C" NOT NULL,              -- RFC 3339 time of its first heartbeat (in this row's life)
  last_seen TEXT COLLATE "C" NOT NULL,               -- RFC 3339 time of its last heartbeat
  expires_at TEXT COLLATE "C" NOT NULL               -- RFC 3339; no longer listed after this (last heartbeat + TTL)
);
CREATE INDEX relays_expires ON relays (expires_at);

-- The relay list changed (a relay came, went or moved region): every replica reloads it at once
-- instead of at its next tick. Heartbeats that only push expires_at forward stay silent.
CREATE FUNCTION mesh_notify_relays() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mesh_relays', lower(TG_OP) || ' ' || current_setting('application_name'));
  RETURN NULL;
END;
$$;
CREATE TRIGGER relays_notify AFTER INSERT OR DELETE OR UPDATE OF region, kind ON relays
  FOR EACH ROW EXECUTE FUNCTION mesh_notify_relays();

CREATE TABLE settings (
  name TEXT COLLATE "C" PRIMARY KEY,                 -- setting name, e.g. relay_mesh_secret
  value TEXT COLLATE "C" NOT NULL,                   -- its value
  created_at TEXT COLLATE "C" NOT NULL               -- RFC 3339 time it was first written
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
ALTER TABLE connections ADD COLUMN a_path TEXT COLLATE "C" CHECK (a_path IN ('direct','relay','none')); -- a's own view of its peer; NULL: a does not report (and in rows older than 0008)
ALTER TABLE connections ADD COLUMN a_latency_ms DOUBLE PRECISION; -- round trip a measured on a_path, in ms; NULL when not measured
ALTER TABLE connections ADD COLUMN a_endpoint TEXT COLLATE "C"; -- endpoint a's WireGuard uses for its peer while a_path is direct; else NULL
ALTER TABLE connections ADD COLUMN a_replica TEXT COLLATE "C"; -- controller replica that wrote a's side (it held a's netmap session)
ALTER TABLE connections ADD COLUMN a_at TEXT COLLATE "C"; -- RFC 3339 time a's side was written
ALTER TABLE connections ADD COLUMN b_path TEXT COLLATE "C" CHECK (b_path IN ('direct','relay','none')); -- b's own view of its peer; NULL: b does not report (and in rows older than 0008)
ALTER TABLE connections ADD COLUMN b_latency_ms DOUBLE PRECISION; -- round trip b measured on b_path, in ms; NULL when not measured
ALTER TABLE connections ADD COLUMN b_endpoint TEXT COLLATE "C"; -- endpoint b's WireGuard uses for its peer while b_path is direct; else NULL
ALTER TABLE connections ADD COLUMN b_replica TEXT COLLATE "C"; -- controller replica that wrote b's side (it held b's netmap session)
ALTER TABLE connections ADD COLUMN b_at TEXT COLLATE "C"; -- RFC 3339 time b's side was written
`,
  },
  {
    // NAT behaviour stored with the node (see the SQLite migration of the same name). The
    // constraint that both are set or neither is a table constraint here (SQLite cannot add one).
    name: '0009-node-nat',
    sql: `
ALTER TABLE nodes ADD COLUMN nat_mapping TEXT COLLATE "C" CHECK (nat_mapping IN ('endpoint-independent','address-dependent','address-and-port-dependent','endpoint-dependent','unknown')); -- RFC 4787 mapping the node reported; NULL when it reported none
ALTER TABLE nodes ADD COLUMN nat_filtering TEXT COLLATE "C" CHECK (nat_filtering IN ('endpoint-independent','address-dependent','address-and-port-dependent','unknown')); -- RFC 4787 filtering the node reported; NULL when it reported none
ALTER TABLE nodes ADD CONSTRAINT nodes_nat_both CHECK ((nat_mapping IS NULL) = (nat_filtering IS NULL)); -- mapping and filtering are set together
`,
  },
  {
    // Connection changes for the admin event stream of every replica: the replica that holds a
    // pair's sessions writes its log entry, and a NOTIFY (mesh_connections) on commit carries the
    // whole entry, with the node names and the tenant, to the others (controller/replicas/
    // pg-change-feed.ts). Unlike the 0006 payloads (ids only), this one needs no read-back: it is
    // small and bounded (ids, two node names, enums, a number, a time; well under NOTIFY's 8000
    // bytes), and thousands of path changes in a burst would otherwise cost as many reads on every
    // replica. Its field "replica" is the writer's application_name. SQLite (one process) records
    // this migration without any change.
    name: '0010-connection-notify',
    sql: `
CREATE FUNCTION mesh_notify_connection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mesh_connections', json_build_object(
    'networkId', NEW.network_id,
    'tenantId', (SELECT tenant_id FROM networks WHERE id = NEW.network_id),
    'id', NEW.seq,
    'at', NEW.at,
    'a', json_build_object('id', NEW.node_a, 'name', (SELECT name FROM nodes WHERE id = NEW.node_a)),
    'b', json_build_object('id', NEW.node_b, 'name', (SELECT name FROM nodes WHERE id = NEW.node_b)),
    'event', NEW.event,
    'from', NEW.from_path,
    'to', NEW.to_path,
    'latencyMs', NEW.latency_ms,
    'replica', current_setting('application_name'))::text);
  RETURN NULL;
END;
$$;
CREATE TRIGGER connection_log_notify AFTER INSERT ON connection_log
  FOR EACH ROW EXECUTE FUNCTION mesh_notify_connection();
`,
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
ALTER TABLE audit ADD COLUMN chain TEXT COLLATE "C"; -- the chain the entry is a link of: its tenant id, '' for entries of no tenant; NULL before 0011
ALTER TABLE audit ADD COLUMN chain_seq BIGINT;      -- its number in the chain, from 1 without gaps; NULL before 0011
ALTER TABLE audit ADD COLUMN prev_hash TEXT COLLATE "C"; -- hex SHA-256 of the link before it ('' for the first); NULL before 0011
ALTER TABLE audit ADD COLUMN hash TEXT COLLATE "C";  -- hex SHA-256 over prev_hash, chain_seq and every stored field; NULL before 0011
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
ALTER TABLE nodes ADD COLUMN owner_id TEXT COLLATE "C"; -- user id of the person who let the node in; NULL when unknown (and before 0012)
CREATE INDEX nodes_owner ON nodes (owner_id);

CREATE TABLE policies (
  tenant_id TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE, -- the tenant the policy governs
  document TEXT COLLATE "C" NOT NULL,    -- the policy as its author wrote it (JSON with comments)
  version BIGINT NOT NULL,               -- 1 for the first policy, +1 per change
  updated_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339 time of the last change
  updated_by TEXT COLLATE "C" NOT NULL   -- user id of who made it
);
`,
  },
  {
    // A tenant's ACL policy changed (set or removed), or one of its users was deleted or renamed
    // (a policy names users; nodes store the owner's id): NOTIFY mesh_policy with the tenant id
    // and the writer's application_name, so that every other replica's netmap hub reads the
    // policy and the user names again and tells the nodes it affects
    // (replicas/pg-change-feed.ts). SQLite (one process) records this migration without any
    // change.
    name: '0013-policy-notify',
    sql: `
CREATE FUNCTION mesh_notify_policy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mesh_policy', coalesce(NEW.tenant_id, OLD.tenant_id) || ' ' || current_setting('application_name'));
  RETURN NULL;
END;
$$;
CREATE TRIGGER policies_notify AFTER INSERT OR UPDATE OR DELETE ON policies
  FOR EACH ROW EXECUTE FUNCTION mesh_notify_policy();
CREATE TRIGGER users_policy_notify AFTER DELETE OR UPDATE OF username ON users
  FOR EACH ROW EXECUTE FUNCTION mesh_notify_policy();
`,
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
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, for listing
  id TEXT COLLATE "C" NOT NULL UNIQUE,               -- public id (ses_...)
  user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE, -- whose login
  created_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 time of the login
  last_used_at TEXT COLLATE "C" NOT NULL,            -- RFC 3339 time of the last refresh (the login when none)
  expires_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 expiry of its current refresh token; pushed on by each refresh (sliding)
  source_address TEXT COLLATE "C",                   -- client address of the login or the last refresh
  revoked_at TEXT COLLATE "C",                       -- RFC 3339 time of revocation (logout, revoke, reuse); NULL while live
  revoked_reason TEXT COLLATE "C" CHECK (revoked_reason IN ('logout','revoked','reuse')) -- why it was revoked
);
CREATE INDEX sessions_user ON sessions (user_id);

ALTER TABLE tokens ADD COLUMN session_id TEXT COLLATE "C" REFERENCES sessions(id) ON DELETE CASCADE; -- the session (token family) of an access token; NULL for a token from before 0014 (valid until its expires_at, as then)
CREATE INDEX tokens_session ON tokens (session_id);

CREATE TABLE refresh_tokens (
  token_hash TEXT COLLATE "C" PRIMARY KEY,           -- hex SHA-256 of the refresh token (never the token)
  session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE, -- its family
  created_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 issue time
  expires_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 expiry
  retired_at TEXT COLLATE "C",                       -- RFC 3339 time it was exchanged; NULL: the family's current one
  retired_by TEXT COLLATE "C"                        -- client address of the exchange (tells a client's own race from a replay)
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE user_mfa (
  user_id TEXT COLLATE "C" PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE, -- the account
  secret TEXT COLLATE "C" NOT NULL,                  -- TOTP secret, base32 (RFC 6238 needs it to verify codes)
  created_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 time the secret was made
  enabled_at TEXT COLLATE "C",                       -- RFC 3339 time it was confirmed with a code; NULL: pending, not asked at login
  last_step BIGINT                       -- the newest 30 s time step whose code was accepted; codes of it or older are refused (replay)
);

CREATE TABLE mfa_recovery_codes (
  user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE, -- the account
  code_hash TEXT COLLATE "C" NOT NULL,               -- hex SHA-256 of the recovery code (shown once, never stored)
  created_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 time it was made
  used_at TEXT COLLATE "C",                          -- RFC 3339 time it was used; NULL: still usable
  PRIMARY KEY (user_id, code_hash)
);
`,
  },
  {
    // People join tenants by invite, and the moderator role (issue 10): the role CHECKs take the
    // new role (PostgreSQL changes a constraint in place; SQLite rebuilds the tables), and the
    // user invites table.
    name: '0015-user-invites',
    sql: `
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('owner','admin','moderator','member','guest'));
ALTER TABLE network_members DROP CONSTRAINT network_members_role_check;
ALTER TABLE network_members ADD CONSTRAINT network_members_role_check CHECK (role IN ('owner','admin','moderator','member','guest'));
ALTER TABLE invites DROP CONSTRAINT invites_role_check;
ALTER TABLE invites ADD CONSTRAINT invites_role_check CHECK (role IN ('owner','admin','moderator','member','guest'));

CREATE TABLE user_invites (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order, used for pagination cursors
  id TEXT COLLATE "C" NOT NULL UNIQUE,   -- public id (uiv_...)
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE, -- the tenant a person joins with it
  code_hash TEXT COLLATE "C" NOT NULL UNIQUE, -- hex SHA-256 of the secret code (uinv_...); the code is shown once
  role TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner','admin','moderator','member','guest')), -- tenant role of the accounts made with it
  max_uses INTEGER,                      -- NULL: unlimited
  uses INTEGER NOT NULL DEFAULT 0,       -- accounts made with this invite
  expires_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339; refused after this
  revoked_at TEXT COLLATE "C",           -- RFC 3339 when revoked; NULL: live
  created_at TEXT COLLATE "C" NOT NULL,  -- RFC 3339 creation time
  created_by TEXT COLLATE "C" NOT NULL   -- user id of the creator (kept after the user is deleted)
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
ALTER TABLE nodes ADD COLUMN key_expires_at TEXT COLLATE "C"; -- RFC 3339 time the node's key expires; NULL: never
ALTER TABLE nodes ADD COLUMN key_warned_at TEXT COLLATE "C"; -- RFC 3339 time the coming expiry was first announced; NULL: not yet
CREATE INDEX nodes_key_expiry ON nodes (key_expires_at) WHERE key_expires_at IS NOT NULL;
`,
  },
  {
    // OIDC login (issue 10): see the SQLite migration of the same name.
    name: '0017-oidc',
    sql: `

CREATE TABLE user_identities (
  issuer TEXT COLLATE "C" NOT NULL,                  -- the provider's issuer identifier (the ID token's iss)
  subject TEXT COLLATE "C" NOT NULL,                 -- the ID token's sub at that issuer
  user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE, -- the user it logs in as
  provider TEXT COLLATE "C" NOT NULL,                -- name of the configured issuer it came through
  email TEXT COLLATE "C",                            -- the email claim at the last login, if any
  groups TEXT COLLATE "C" NOT NULL DEFAULT '[]',     -- JSON array of the group claim at the last login
  created_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 time of the first login
  last_login_at TEXT COLLATE "C" NOT NULL,           -- RFC 3339 time of the last login
  PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

CREATE TABLE oidc_flows (
  id_hash TEXT COLLATE "C" PRIMARY KEY,              -- hex SHA-256 of the flow handle given to the client (never the handle)
  kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('code','device')), -- authorization code with PKCE, or device authorization
  provider TEXT COLLATE "C" NOT NULL,                -- name of the configured issuer
  data TEXT COLLATE "C" NOT NULL,                    -- JSON: state, nonce, PKCE verifier, redirect URI; or device code and poll interval
  created_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 start
  expires_at TEXT COLLATE "C" NOT NULL,              -- RFC 3339 time it is swept
  next_poll_at TEXT COLLATE "C"                      -- device flows: RFC 3339 time before which the provider is not asked again
);
CREATE INDEX oidc_flows_expires ON oidc_flows (expires_at);
`,
  },
  {
    // As SQLite's 0018: the address that started an OIDC login in progress, to cap them per
    // address. And a login that changed someone's IdP groups (which `oidc:NAME` members of policy
    // groups match) is a policy change of their tenant for every other replica, as 0013's
    // triggers tell one: NOTIFY mesh_policy, only when the tenant has a policy (the writing
    // replica tells its own subscribers itself: controller/state.ts).
    name: '0018-oidc-source-groups',
    sql: `
ALTER TABLE oidc_flows ADD COLUMN source TEXT COLLATE "C"; -- the client address that started the flow; null when unknown
CREATE INDEX oidc_flows_source ON oidc_flows (source, expires_at) WHERE source IS NOT NULL;

CREATE FUNCTION mesh_notify_identity_groups() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  t TEXT;
BEGIN
  SELECT u.tenant_id INTO t FROM users u
    WHERE u.id = NEW.user_id AND EXISTS (SELECT 1 FROM policies p WHERE p.tenant_id = u.tenant_id);
  IF t IS NOT NULL THEN
    PERFORM pg_notify('mesh_policy', t || ' ' || current_setting('application_name'));
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER user_identities_groups_notify AFTER UPDATE OF groups ON user_identities
  FOR EACH ROW WHEN (OLD.groups IS DISTINCT FROM NEW.groups) EXECUTE FUNCTION mesh_notify_identity_groups();
`,
  },
  {
    // TOTP secrets sealed at rest (issue 10): see the SQLite migration of the same name.
    name: '0019-sealed-mfa-secrets',
    sql: `
-- user_mfa.secret: v1:<key id>:<nonce>:<AES-256-GCM ciphertext and tag>, sealed with the secrets key
`,
  },
]

/** RFC 3339 UTC in the server's clock, formatted as JavaScript's toISOString() would. */
const NOW_RFC3339 = `to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`

/**
 * Applies pending migrations on `client` (one connection: the advisory lock belongs to its
 * session). `known` is injectable so tests can play an older or a newer binary. Throws
 * DATABASE_NEWER_THAN_BINARY when the database lists an unknown migration.
 *
 * On any error the caller must throw the connection away (release(err)), not reuse it: a failed
 * run may leave the lock held and a transaction aborted on it.
 */
export async function migrate(
  client: pg.ClientBase,
  known: readonly Migration[] = MIGRATIONS,
): Promise<{applied: string[]}> {
  // 1. Wait for any other replica's run to finish. Everything below, even CREATE TABLE IF NOT
  //    EXISTS (which races on the catalog when two sessions run it at once), happens under it.
  await client.query('SELECT pg_advisory_lock($1, $2)', [...MIGRATION_LOCK])
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS migrations (
      name TEXT COLLATE "C" PRIMARY KEY,  -- migration name, e.g. 0001-initial
      applied_at TEXT COLLATE "C" NOT NULL -- RFC 3339 time it was applied
    )`)
    const executed = async () =>
      (await client.query<{name: string}>('SELECT name FROM migrations ORDER BY name')).rows.map(
        (r) => r.name,
      )
    // 2. Refuse a database written by a newer mesh before touching anything.
    const knownNames = new Set(known.map((m) => m.name))
    const unknown = (await executed()).filter((n) => !knownNames.has(n))
    if (unknown.length > 0) {
      throw new MeshError('DATABASE_NEWER_THAN_BINARY', {
        message: `the database has migration ${unknown.join(', ')} that this mesh does not know`,
        detail: {unknown},
      })
    }
    // 3. Each migration and its row in one transaction. The migration's own up() records it;
    //    logMigration is then a no-op that stays correct if umzug calls it.
    const record = (name: string) =>
      client.query(
        `INSERT INTO migrations (name, applied_at) VALUES ($1, ${NOW_RFC3339}) ON CONFLICT (name) DO NOTHING`,
        [name],
      )
    const storage: UmzugStorage = {
      executed,
      logMigration: async ({name}) => {
        await record(name)
      },
      unlogMigration: async () => {
        throw new Error('migrations are append-only; there is no down')
      },
    }
    const umzug = new Umzug({
      migrations: known.map((m) => ({
        name: m.name,
        up: async () => {
          await client.query('BEGIN')
          try {
            await client.query(m.sql)
            await record(m.name)
            await client.query('COMMIT')
          } catch (err) {
            await client.query('ROLLBACK').catch(() => undefined)
            throw err
          }
        },
      })),
      storage,
      logger: undefined,
    })
    const applied = await umzug.up()
    return {applied: applied.map((m) => m.name)}
  } finally {
    // 4. Let the next replica in. If this fails the connection is broken, and the server drops
    //    the lock with the session once the caller throws the connection away.
    await client.query('SELECT pg_advisory_unlock($1, $2)', [...MIGRATION_LOCK]).catch(() => undefined)
  }
}
