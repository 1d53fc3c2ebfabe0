#!/bin/bash
# NAT roles for the docker testbed (installed as /usr/local/bin/nat-router in the `tools`
# image; docker/compose.yml runs it):
#
#   nat-router router consistent|random WAN_ADDR
#       Masquerade everything leaving the interface that holds WAN_ADDR, forward nothing
#       in that was not asked for, and stay up until SIGTERM.
#       consistent: plain masquerade; Linux keeps the source port when it is free and
#                   reuses the mapping for every destination (endpoint-independent
#                   mapping: hyperdht's "consistent" firewall class).
#       random:     masquerade random; every new destination gets its own port
#                   (endpoint-dependent mapping: hyperdht's "random" class).
#
#   nat-router behind GATEWAY COMMAND...
#       Route everything via GATEWAY (the router's address on this private network)
#       instead of Docker's bridge, then exec COMMAND (a tern node, say).
#
# Both need CAP_NET_ADMIN; the router also net.ipv4.ip_forward=1 (compose sets both).
set -euo pipefail

usage() {
  echo "usage: nat-router router consistent|random WAN_ADDR | nat-router behind GATEWAY COMMAND..." >&2
  exit 2
}

router() {
  local mode=$1 wan_addr=$2 flags
  case "$mode" in
    consistent) flags="" ;;
    random) flags="random" ;;
    *) usage ;;
  esac
  # Docker attaches networks in an order compose does not promise, so find the WAN
  # interface by its address rather than assuming eth0.
  local wan_if
  wan_if=$(ip -o -4 addr show | awk -v a="$wan_addr" '{ split($4, p, "/"); if (p[1] == a) print $2 }')
  [ -n "$wan_if" ] || { echo "nat-router: no interface holds $wan_addr" >&2; exit 1; }

  nft -f - <<EOF
table ip tern_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "$wan_if" masquerade $flags
  }
  # Unsolicited packets from the WAN are dropped before conntrack confirms an entry for
  # them, as a home router's firewall does: otherwise a holepunch probe that reaches
  # this router before it has a mapping leaves an entry that makes it map its own
  # host's answer to another port (scripts/nat-test.sh's routers do the same).
  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
    iifname "$wan_if" ct state new drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    # Replies to what the private side sent, and nothing else, come back in.
    ct state established,related accept
    iifname != "$wan_if" oifname "$wan_if" accept
  }
}
EOF
  echo "nat-router: $mode NAT up, WAN $wan_if ($wan_addr)"
  # PID 1 gets no default signal handlers: stop on SIGTERM explicitly.
  trap 'echo "nat-router: stopping"; exit 0' TERM INT
  sleep infinity &
  wait
}

behind() {
  local gateway=$1
  shift
  [ $# -gt 0 ] || usage
  ip route replace default via "$gateway"
  echo "nat-router: default route via $gateway"
  exec "$@"
}

case "${1:-}" in
  router) [ $# -eq 3 ] || usage; router "$2" "$3" ;;
  behind) [ $# -ge 3 ] || usage; shift; behind "$@" ;;
  *) usage ;;
esac
