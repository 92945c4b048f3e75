#!/bin/bash
# Nothing may leave the machine: reject packets from pods (forwarded) and from the node itself
# (output) that would leave through the node's Docker network interface toward an address outside
# that network. Pods' packets to a Service address before kube-proxy has written its rules, and
# anything a pod or the node tries to reach on the internet, would otherwise follow the default
# route off the machine. Rejected (not dropped) so callers fail fast.
set -euo pipefail
POD_SUBNET="${POD_SUBNET:-10.244.0.0/16}"
dev="$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')"
[[ -n "$dev" ]] || { echo "realm-node-lockdown: no default route; nothing can leave" >&2; exit 0; }
net="$(ip -4 -o addr show dev "$dev" | awk '{print $4; exit}')"
[[ -n "$net" ]] || { echo "realm-node-lockdown: $dev has no IPv4 address" >&2; exit 1; }
chain=REALM-LOCKDOWN
iptables -w -N "$chain" 2>/dev/null || iptables -w -F "$chain"
iptables -w -A "$chain" -o "$dev" -d "$net" -j RETURN
iptables -w -A "$chain" -o "$dev" -j REJECT --reject-with icmp-admin-prohibited
iptables -w -C FORWARD -s "$POD_SUBNET" -j "$chain" 2>/dev/null || iptables -w -I FORWARD 1 -s "$POD_SUBNET" -j "$chain"
iptables -w -C OUTPUT -j "$chain" 2>/dev/null || iptables -w -I OUTPUT 1 -j "$chain"
# The same for IPv6 (a Docker network may have IPv6): only the network's own prefixes may be reached.
if ip6tables -w -L >/dev/null 2>&1; then
  ip6tables -w -N "$chain" 2>/dev/null || ip6tables -w -F "$chain"
  while read -r p; do ip6tables -w -A "$chain" -o "$dev" -d "$p" -j RETURN; done < <(ip -6 -o addr show dev "$dev" scope global | awk '{print $4}')
  ip6tables -w -A "$chain" -o "$dev" -j REJECT --reject-with adm-prohibited
  ip6tables -w -C FORWARD -j "$chain" 2>/dev/null || ip6tables -w -I FORWARD 1 -j "$chain"
  ip6tables -w -C OUTPUT -j "$chain" 2>/dev/null || ip6tables -w -I OUTPUT 1 -j "$chain"
fi
echo "realm-node-lockdown: packets leaving $dev toward anything outside $net are rejected"
