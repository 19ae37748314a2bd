/** Arguments and flags that several admin commands share, defined once so they read the same. */
import {Args, Flags} from '@oclif/core'

/** `--network NAME|ID`, required: the network a list or create acts on. */
export const networkFlag = () => Flags.string({char: 'n', description: 'network name or id', required: true})

/** The NODE argument of node commands, and the optional `--network` that lets it be a name. */
export const nodeArg = () => Args.string({description: 'node id, or its name with --network', required: true})
export const nodeNetworkFlag = () =>
  Flags.string({char: 'n', description: 'look the node up by name in this network'})

/** `mesh join` / `mesh up --auth-key`: whether and how long to follow the steps after registering. */
export const waitFlags = {
  wait: Flags.boolean({
    description:
      'wait for approval, WireGuard and the first handshake [default: on a terminal yes, otherwise no]',
    allowNo: true,
  }),
  timeout: Flags.integer({
    description: 'seconds to wait for those steps at most (with --wait)',
    default: 60,
    min: 1,
    max: 3600,
  }),
}
