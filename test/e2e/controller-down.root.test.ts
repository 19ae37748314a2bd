/**
 * The data plane does not depend on the control plane: with the controller SIGKILLed, pings
 * between existing nodes go on for 30 s, and a meshd restarted meanwhile, its interface gone as
 * after a reboot, brings its tunnel back from its cached netmap within 5 s.
 */
import {describe, expect, it} from 'vitest'
import type {Lab} from '../../cli/lib/lab/lab.js'
import {isAlive} from '../../cli/lib/lab/procs.js'
import {run, runOk, waitFor} from '../../cli/lib/lab/sh.js'
import type {LabNode} from '../../cli/lib/lab/state.js'
import {longestGap, pingStats, useLab} from '../lab/e2e-helpers.js'
import {labSkipReason} from '../lab/skip.js'

const skip = labSkipReason()
const NET = 'lab'

describe.skipIf(skip !== undefined)(
  `mesh with its controller down${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let lab: Lab
    useLab({nodes: 3, network: NET, cidr: '10.242.0.0/24'}, (l) => {
      lab = l
    })

    it('keeps pings flowing for 30 s after a SIGKILL of the controller, and a restarted meshd is back within 5 s', async () => {
      const [a, b, c] = lab.nodes as [LabNode, LabNode, LabNode]
      await lab.waitAllPairsPing(NET, [a, b, c], 5000)
      const ctl = lab.proc('controller')!
      await lab.killController('SIGKILL')
      expect(isAlive(ctl)).toBe(false)

      // 60 pings, 0.5 s apart: 30 s of traffic between two nodes that keep running.
      const pings = run('ping', ['-n', '-i', '0.5', '-c', '60', '-W', '1', b.addresses[NET]!], {
        ns: a.ns,
        timeoutMs: 45_000,
      })

      // Meanwhile node3's meshd restarts with no controller to ask, and without its interface
      // (as after a reboot): the tunnel can only come back from meshd's cached netmap.
      const cIface = await lab.interfaceOf(c, NET)
      await lab.stopDaemon(c, 'SIGTERM')
      await runOk('ip', ['-n', c.ns, 'link', 'del', 'dev', cIface])
      expect(await lab.ping(a, c.addresses[NET]!)).toBe(false)
      const t0 = Date.now()
      await lab.startDaemon(c)
      const peers: LabNode[] = [a, b]
      await Promise.all(
        peers.flatMap((p) => [
          waitFor(`${c.name} -> ${p.name}`, () => lab.ping(c, p.addresses[NET]!), {
            timeoutMs: 10_000,
            intervalMs: 20,
          }),
          waitFor(`${p.name} -> ${c.name}`, () => lab.ping(p, c.addresses[NET]!), {
            timeoutMs: 10_000,
            intervalMs: 20,
          }),
        ]),
      )
      const backMs = Date.now() - t0
      console.log(`[e2e] restarted meshd (controller down) had its tunnel back in ${backMs} ms`)
      expect(backMs).toBeLessThanOrEqual(5000)
      const st = (await lab.status(c))!
      expect(st.networks.find((n) => n.name === NET)?.connected).toBe(false)

      const r = await pings
      const {sent, received} = pingStats(r.stdout)
      const gap = longestGap(r.stdout, 60)
      console.log(`[e2e] controller down: ${received}/${sent} pings answered, longest gap ${gap}`)
      expect(sent).toBe(60)
      expect(received / sent).toBeGreaterThanOrEqual(0.95)
      expect(gap).toBeLessThanOrEqual(2)
    })
  },
)
