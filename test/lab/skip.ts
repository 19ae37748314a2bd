/**
 * Why a namespace-lab test cannot run on this machine (not root, tools missing, not built), or
 * undefined when it can. Root tests call it once and skip themselves with the reason.
 */
import fs from 'node:fs'
import {labPrerequisiteProblem, meshJs} from '../../cli/lib/lab/lab.js'
import {have} from '../../cli/lib/lab/sh.js'

export function labSkipReason(opts: {needBuild?: boolean; tools?: string[]} = {}): string | undefined {
  if (process.platform !== 'linux') return 'Linux only'
  if (process.getuid?.() !== 0) return 'needs root'
  for (const t of ['ip', 'wg', 'wireguard-go', 'ping', ...(opts.tools ?? [])])
    if (!have(t)) return `${t} missing`
  if (!fs.existsSync('/dev/net/tun')) return '/dev/net/tun missing'
  if (opts.needBuild !== false) {
    const problem = labPrerequisiteProblem()
    if (problem) return problem
    if (!fs.existsSync(meshJs())) return 'not built'
  }
  return undefined
}
