/**
 * What the `mesh policy` commands share: reading a policy file (or stdin) within the size the
 * controller takes, the offline check, and listing every problem of a refused policy.
 */
import fs from 'node:fs/promises'
import {isMeshError, MeshError} from '../../shared/errors.js'
import {checkPolicy} from '../../shared/policy/check.js'
import {MAX_POLICY_BYTES} from '../../shared/protocol/control-api.js'
import type {MeshCommand} from './mesh-command.js'

/** The file's text (`-`: stdin); INVALID_ARGUMENT when it cannot be read or is too large. */
export async function readPolicyFile(file: string): Promise<string> {
  let bytes: Buffer
  try {
    if (file === '-') {
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
        size += chunk.length
        if (size > MAX_POLICY_BYTES) break
        chunks.push(chunk)
      }
      bytes = Buffer.concat(chunks)
      if (size > MAX_POLICY_BYTES) throw new RangeError('too large')
    } else {
      const stat = await fs.stat(file)
      if (stat.size > MAX_POLICY_BYTES) throw new RangeError('too large')
      bytes = await fs.readFile(file)
    }
  } catch (err) {
    throw new MeshError('INVALID_ARGUMENT', {
      message:
        err instanceof RangeError
          ? `${file}: larger than ${MAX_POLICY_BYTES / 1024} KiB, the most a policy may be`
          : `${file}: ${(err as Error).message}`,
      hint: 'give the path of a policy file, or - to read it from stdin',
    })
  }
  return bytes.toString('utf8')
}

/** The offline check of `mesh policy check`: the controller's own rule, run here. */
export function checkPolicyLocally(document: string): {ok: true; rules: number; tests: number} {
  const policy = checkPolicy(document)
  return {ok: true, rules: policy.rules.length, tests: policy.tests.length}
}

interface Problem {
  readonly line?: number
  readonly column?: number
  readonly path?: string
  readonly message?: string
}

/**
 * Runs `fn`; when the policy is refused (POLICY_INVALID / POLICY_TESTS_FAILED), every problem it
 * names goes to stderr, one per line, before the error itself (the message has the first only).
 */
export async function withPolicyProblems<T>(cmd: MeshCommand, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (isMeshError(err) && (err.code === 'POLICY_INVALID' || err.code === 'POLICY_TESTS_FAILED')) {
      const detail = (err.detail ?? {}) as {errors?: unknown; failures?: unknown}
      const problems = (
        Array.isArray(detail.errors) ? detail.errors : Array.isArray(detail.failures) ? detail.failures : []
      ) as Problem[]
      if (!cmd.jsonEnabled() && problems.length > 1)
        for (const p of problems.slice(0, 50))
          cmd.logToStderr(
            `${p.line !== undefined ? `line ${p.line}${p.column !== undefined ? `:${p.column}` : ''}: ` : ''}${p.path ? `${p.path}: ` : ''}${p.message ?? ''}`,
          )
    }
    throw err
  }
}
