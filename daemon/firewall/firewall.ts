/**
 * Firewall: puts a network's inbound rules (daemon/firewall/ruleset.ts) into nftables with
 * `nft -f -`, and takes them out with the interface. It only runs nft when the script for an
 * interface differs from the one nft last accepted for it (by SHA-256), so the reconcile loop can
 * call apply() on every netmap frame.
 *
 * nft runs through execa, no shell, with a bounded timeout; the script goes in on stdin. Failures
 * throw a FirewallError carrying nft's own message; what to do about them (fail closed) is the
 * caller's choice, see Backend.applyFirewall.
 *
 * Without an nft binary: with no policy nothing happens (no table can exist without nft), with a
 * policy apply() throws FirewallError with `missing: true`. With no policy an nft that fails is
 * not an error either (nothing is to be enforced; a machine whose kernel lacks nf_tables must not
 * show every network as broken): apply() returns it as a `warning`, once per change of script.
 */
import {createHash} from 'node:crypto'
import {execa} from 'execa'
import {buildRuleset, type Ruleset, type RulesetInput} from './ruleset.js'

export interface NftResult {
  readonly exitCode: number
  readonly stderr: string
  /** The nft binary is not there (ENOENT). */
  readonly missing?: boolean
}

/** Runs `nft args…` with `input` on stdin; never throws for a failing nft. */
export type NftRunner = (
  args: readonly string[],
  opts: {input: string; timeoutMs: number},
) => Promise<NftResult>

/** nft through execa (no shell); `nft` is looked up in PATH. */
export const execaNft: NftRunner = async (args, opts) => {
  const res = await execa('nft', args, {reject: false, timeout: opts.timeoutMs, input: opts.input})
  if ((res as {code?: string}).code === 'ENOENT')
    return {exitCode: 127, stderr: 'nft not found', missing: true}
  return {
    exitCode: res.failed && !res.exitCode ? 1 : (res.exitCode ?? 1),
    stderr: String(res.stderr || res.shortMessage || '').trim(),
  }
}

/** A runner for a machine without nft (and for tests whose driver is fake): nft is missing. */
export const absentNft: NftRunner = () =>
  Promise.resolve({exitCode: 127, stderr: 'nft not found', missing: true})

/** nft applies a whole table in milliseconds; a hung one must not hold the apply queue. */
export const NFT_TIMEOUT_MS = 10_000
/** nft's message is kept to this many characters (it quotes the script line it refused). */
const MAX_ERROR_CHARS = 500

export class FirewallError extends Error {
  override readonly name = 'FirewallError'
  constructor(
    message: string,
    /** The nft binary is not installed. */
    readonly missing = false,
  ) {
    super(message)
  }
}

export interface FirewallApplyResult {
  /** nft ran and accepted a new script. */
  readonly changed: boolean
  readonly ruleset: Ruleset
  /** With no policy: nft failed to remove an earlier table (its message). */
  readonly warning?: string
}

export interface FirewallOptions {
  run?: NftRunner
  timeoutMs?: number
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex')

export class Firewall {
  /**
   * By interface: the hash of the script nft last accepted. Absent: unknown (never applied by
   * this process, or the last attempt failed), so the next apply runs nft whatever it holds.
   * Owned by the backend's per-network apply queue: one call per interface at a time.
   */
  private readonly applied = new Map<string, string>()

  constructor(private readonly opts: FirewallOptions = {}) {}

  private get run(): NftRunner {
    return this.opts.run ?? execaNft
  }

  /**
   * Makes the interface's table match `input` (creates, replaces or removes it). A peer the
   * ruleset skipped is in `ruleset.skipped`; nft failing throws FirewallError, and then what nft
   * holds is unchanged (the script is one transaction).
   */
  async apply(input: RulesetInput): Promise<FirewallApplyResult> {
    const ruleset = buildRuleset(input)
    const hash = sha256(ruleset.script)
    if (this.applied.get(input.iface) === hash) return {changed: false, ruleset}
    this.applied.delete(input.iface)
    try {
      await this.nft(ruleset.script, ruleset.policy)
    } catch (err) {
      if (ruleset.policy) throw err
      this.applied.set(input.iface, hash)
      return {changed: false, ruleset, warning: (err as Error).message}
    }
    this.applied.set(input.iface, hash)
    return {changed: true, ruleset}
  }

  /** Removes the interface's table; a table that is not there (or no nft at all) is fine. */
  async remove(iface: string): Promise<void> {
    const {script} = buildRuleset({iface, cidr: '0.0.0.0/0', self: '0.0.0.0', peers: []})
    if (this.applied.get(iface) === sha256(script)) return
    this.applied.delete(iface)
    await this.nft(script, false)
    this.applied.set(iface, sha256(script))
  }

  private async nft(script: string, policy: boolean): Promise<void> {
    const res = await this.run(['-f', '-'], {input: script, timeoutMs: this.opts.timeoutMs ?? NFT_TIMEOUT_MS})
    if (res.missing) {
      if (!policy) return
      throw new FirewallError('nftables (the nft command) is not installed', true)
    }
    if (res.exitCode !== 0)
      throw new FirewallError(`nft: ${(res.stderr || `exit code ${res.exitCode}`).slice(0, MAX_ERROR_CHARS)}`)
  }
}
