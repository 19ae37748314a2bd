/**
 * The inputs of the golden nftables scripts beside this file (<case>.nft): ruleset.test.ts
 * compares the builder's output with them, firewall.root.test.ts checks each with `nft -c`.
 * Test-only.
 */
import type {FirewallPeer, RulesetInput} from '../ruleset.js'

export const base = (peers: FirewallPeer[]): RulesetInput => ({
  iface: 'mesh0',
  cidr: '10.7.0.0/24',
  self: '10.7.0.1',
  peers,
  daemonUdpPorts: [41820],
})

/** By golden file name. */
export const GOLDEN_CASES: Record<string, RulesetInput> = {
  no_policy: base([{address: '10.7.0.2'}, {address: '10.7.0.3'}]),
  one_peer_all: base([{address: '10.7.0.2', inbound: [{proto: 'all'}]}]),
  tcp_ranges: base([
    {
      address: '10.7.0.2',
      inbound: [
        {
          proto: 'tcp',
          ports: [
            [8000, 8100],
            [22, 22],
            [20, 30],
            [8101, 8200],
          ],
        },
        {proto: 'udp', ports: [[53, 53]]},
      ],
    },
  ]),
  icmp: base([{address: '10.7.0.2', inbound: [{proto: 'icmp'}]}]),
  only_replies: base([{address: '10.7.0.2', inbound: []}]),
  many_peers: base([
    {address: '10.7.0.2'},
    {address: '10.7.0.3', inbound: [{proto: 'tcp', ports: [[443, 443]]}, {proto: 'icmp'}]},
    {address: '10.7.0.4', inbound: []},
    {address: '10.7.0.5', inbound: [{proto: 'all'}, {proto: 'tcp', ports: [[22, 22]]}]},
    {
      address: '10.7.0.6',
      inbound: [
        {
          proto: 'udp',
          ports: [
            [5000, 5100],
            [6000, 6000],
          ],
        },
      ],
    },
    {address: '10.7.0.7', inbound: [{proto: 'tcp', ports: [[22, 22]]}]},
  ]),
}
