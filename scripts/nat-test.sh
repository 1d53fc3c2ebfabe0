#!/usr/bin/env bash
# Holepunching through real NATs on one Linux host (needs root): network namespaces,
# veth pairs and nftables masquerade routers, built here and torn down on exit.
#
#   wan (10.99.0.0/24): a tern bootstrap node and 8 tern nodes on 10.99.0.1
#   nat1 10.99.0.11 -> lan 192.168.1.0/24 -> host a 192.168.1.2
#                   -> lan 192.168.3.0/24 -> host c 192.168.3.2
#   nat2 10.99.0.12 -> lan 192.168.2.0/24 -> host b 192.168.2.2
#
# Linux conntrack filters inbound packets by exact address and port, so nothing reaches
# a or b unless they sent to that address first: a connection between them exists only
# if holepunching works. Unsolicited inbound packets are dropped before conntrack
# confirms an entry for them (as a home router's firewall does): otherwise the first
# probe, which reaches the peer's router before that router has a mapping, would leave
# an entry that makes the router map its own host's answer to another port. A "consistent" router keeps source ports (plain masquerade); a
# "random" one maps every destination to a new random port (masquerade random).
#
# Cases: tern<->tern, JS client -> tern server and tern client -> JS server behind two
# consistent NATs; an idle connection behind short NAT timeouts; JS behind a random NAT
# <-> tern behind a consistent one (the JS side opens its birthday sockets, tern sprays
# ports) and the other way round (tern opens its birthday sockets, the tern or JS
# server sprays), and servers behind the random NAT (tern or JS server opens its birthday
# sockets, the tern or JS client sprays); tern behind a random NAT -> a reachable server; two hosts behind the same NAT,
# which does not loop packets for its public address back inside ("hairpinning"), so only
# the LAN shortcut connects them (tern<->tern, JS client -> tern server, tern client -> JS
# server). Every wait is bounded.
#
# Usage: scripts/nat-test.sh   (TERN=path/to/tern, default target/debug/tern)
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "nat-test: needs root (network namespaces, nftables)"; exit 1; }
command -v nft >/dev/null || { echo "nat-test: nft (nftables) is required"; exit 1; }
command -v node >/dev/null || { echo "nat-test: node is required for the JS peers"; exit 1; }

TERN=$(realpath "${TERN:-target/debug/tern}")
JS=$(realpath interop/stream.js)
P="tn$$"   # namespace prefix, unique per run
WORK=$(mktemp -d)
PIDS=()
BOOT=10.99.0.1:49736
export TERN_LOG=${TERN_LOG:-warn}

cleanup() {
  # Servers start inside command substitutions (subshells): their pids are in a file.
  [ -f "$WORK/pids" ] && mapfile -t -O "${#PIDS[@]}" PIDS <"$WORK/pids"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for ns in a b c nat1 nat2 wan; do ip netns del "$P-$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 1" INT TERM

# Foreground helper. Background processes call `ip netns exec` directly so that `$!` is
# the process itself (ip execs it), not a subshell that a kill would leave behind.
in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

mkns() {
  ip netns add "$P-$1"
  ip -n "$P-$1" link set lo up
}

# The "internet": one bridge in its own namespace.
mkns wan
ip -n "$P-wan" link add br0 type bridge
ip -n "$P-wan" addr add 10.99.0.1/24 dev br0
ip -n "$P-wan" link set br0 up

# set_nat ROUTER consistent|random: the router's masquerade kind (also swapped between
# cases).
set_nat() {
  local flags=""
  [ "$2" = random ] && flags="random"
  in_ns "$1" nft flush ruleset
  in_ns "$1" nft -f - <<EOF
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" masquerade $flags
  }
  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
    iifname "wan0" ct state new drop
  }
}
EOF
  in_ns "$1" conntrack -F 2>/dev/null || true
}

# router NAME WAN_IP consistent|random
router() {
  local name=$1 wan_ip=$2 kind=$3
  mkns "$name"
  ip link add "w-$P-$name" netns "$P-wan" type veth peer name wan0 netns "$P-$name"
  ip -n "$P-wan" link set "w-$P-$name" master br0 up
  ip -n "$P-$name" addr add "$wan_ip/24" dev wan0
  ip -n "$P-$name" link set wan0 up
  in_ns "$name" sysctl -qw net.ipv4.ip_forward=1
  set_nat "$name" "$kind"
}

# host NAME ROUTER LAN_PREFIX: one machine behind a router
host() {
  local name=$1 via=$2 lan=$3
  mkns "$name"
  ip link add "l-$P-$name" netns "$P-$via" type veth peer name eth0 netns "$P-$name"
  ip -n "$P-$via" addr add "$lan.1/24" dev "l-$P-$name"
  ip -n "$P-$via" link set "l-$P-$name" up
  ip -n "$P-$name" addr add "$lan.2/24" dev eth0
  ip -n "$P-$name" link set eth0 up
  ip -n "$P-$name" route add default via "$lan.1"
}

router nat1 10.99.0.11 consistent
router nat2 10.99.0.12 consistent
host a nat1 192.168.1
host b nat2 192.168.2
host c nat1 192.168.3

# The wan has no route into the LANs: only NAT mappings lead there.
if ip -n "$P-wan" route get 192.168.1.2 >/dev/null 2>&1; then
  echo "nat-test: the wan routes to a LAN; the NAT is not isolating"; exit 1
fi

# The DHT on the wan: a bootstrap node and 8 persistent nodes (reachable, so they relay).
ip netns exec "$P-wan" "$TERN" bootstrap --host 10.99.0.1 --port 49736 >"$WORK/testnet.log" 2>&1 &
PIDS+=($!)
ip netns exec "$P-wan" "$TERN" node --host 10.99.0.1 --port 49737 --nodes 8 --bootstrap "$BOOT" \
  --firewalled false --ephemeral false >>"$WORK/testnet.log" 2>&1 &
PIDS+=($!)
ready=0
for _ in $(seq 60); do
  if in_ns a "$TERN" ping "$BOOT" --bootstrap "$BOOT" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
[ "$ready" = 1 ] || { echo "nat-test: the wan DHT did not come up"; cat "$WORK/testnet.log"; exit 1; }
sleep 3 # let the nodes join each other's tables

head -c $((1 << 20)) /dev/urandom >"$WORK/data"
mkfifo "$WORK/js-stdin"
exec 3<>"$WORK/js-stdin"
failed=0
pass() { printf '  PASS  %s\n' "$1"; }
fail() { printf '  FAIL  %s\n' "$1"; failed=1; }

# Waits (bounded) for the first line of FILE, a public key.
first_line() {
  for _ in $(seq 100); do
    if [ -s "$1" ] && head -1 "$1" | grep -qE '^[0-9a-f]{64}$'; then head -1 "$1"; return 0; fi
    sleep 0.2
  done
  return 1
}

# tern_server NS SEED: an echoing tern listener behind a NAT; prints its public key.
tern_server() {
  local out="$WORK/server-$1-$2.out"
  ip netns exec "$P-$1" "$TERN" listen --echo --firewalled true --seed "$2" --bootstrap "$BOOT" \
    </dev/null >"$out" 2>"$WORK/server-$1-$2.log" &
  echo $! >>"$WORK/pids"
  first_line "$out"
}

# tern_client NS PUBKEY NAME: sends the data, expects it back byte for byte.
tern_client() {
  if timeout 60 ip netns exec "$P-$1" "$TERN" connect "$2" --bootstrap "$BOOT" \
    <"$WORK/data" >"$WORK/back-$3" 2>"$WORK/client-$3.log" && cmp -s "$WORK/data" "$WORK/back-$3"; then
    pass "$3"
  else
    fail "$3"; tail -5 "$WORK/client-$3.log"
  fi
}

# js_server NS SEED: hyperdht echo server behind a NAT (firewalled, as by default).
js_server() {
  local out="$WORK/js-$1-$2.out"
  # stream.js serves until its stdin closes: the fifo stays open until this script ends.
  ip netns exec "$P-$1" node "$JS" listen "{\"bootstrap\":[\"$BOOT\"],\"seed\":\"$2\",\"firewalled\":true,\"host\":\"0.0.0.0\"}" \
    <"$WORK/js-stdin" >"$out" 2>"$WORK/js-$1-$2.log" &
  echo $! >>"$WORK/pids"
  for _ in $(seq 150); do
    if grep -q '"listening"' "$out" 2>/dev/null; then
      grep '"listening"' "$out" | head -1 | sed 's/.*"publicKey":"\([0-9a-f]*\)".*/\1/'
      return 0
    fi
    sleep 0.2
  done
  return 1
}

# js_client NS PUBKEY NAME: hyperdht client pushing 1 MiB through the echo.
js_client() {
  local res
  res=$(timeout 90 ip netns exec "$P-$1" node "$JS" connect \
    "{\"bootstrap\":[\"$BOOT\"],\"publicKey\":\"$2\",\"bytes\":1048576,\"firewalled\":true,\"host\":\"0.0.0.0\"}" 2>&1 | tail -1)
  if echo "$res" | grep -q '"ok":true'; then pass "$3"; else fail "$3"; echo "    $res"; fi
}

echo "== consistent NAT <-> consistent NAT"
pk=$(tern_server a 1111111111111111111111111111111111111111111111111111111111111111)
tern_client b "$pk" "tern client (b) -> tern server (a)"
js_client b "$pk" "JS client (b) -> tern server (a)"
# A public client with default flags (it assumes a NAT and says UNKNOWN): the server's
# fast-mode probe reaches it and it connects back to the probe's source.
tern_client wan "$pk" "tern client (wan, default flags) -> tern server (a)"
pk=$(js_server a 2222222222222222222222222222222222222222222222222222222222222222)
tern_client b "$pk" "tern client (b) -> JS server (a)"

echo "== two hosts behind one NAT without hairpinning: the LAN shortcut"
# Holepunching towards nat1's own public address goes nowhere; the peers reach each other
# only at the LAN addresses their handshake payloads list (routed by nat1, no NAT).
pk=$(tern_server a 6666666666666666666666666666666666666666666666666666666666666666)
tern_client c "$pk" "tern client (c) -> tern server (a), same NAT"
js_client c "$pk" "JS client (c) -> tern server (a), same NAT"
pk=$(js_server a 7777777777777777777777777777777777777777777777777777777777777777)
tern_client c "$pk" "tern client (c) -> JS server (a), same NAT"

echo "== an idle holepunched connection outlives short NAT timeouts (keepalive)"
# UDP mappings on both routers now expire after 12 s without traffic (over twice the 5 s
# heartbeat, so a late timer on a busy machine does not matter); the connection is idle
# for 30 s in the middle of the transfer, so only heartbeats keep it alive.
for r in nat1 nat2; do
  in_ns "$r" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=12 \
    net.netfilter.nf_conntrack_udp_timeout_stream=12
done
pk=$(tern_server a 4444444444444444444444444444444444444444444444444444444444444444)
head -c 4096 /dev/urandom >"$WORK/part1"
head -c 4096 /dev/urandom >"$WORK/part2"
cat "$WORK/part1" "$WORK/part2" >"$WORK/idle-expected"
set +e
{ cat "$WORK/part1"; sleep 30; cat "$WORK/part2"; } |
  TERN_LOG=info timeout 90 ip netns exec "$P-b" "$TERN" connect "$pk" --bootstrap "$BOOT" \
    >"$WORK/idle-back" 2>"$WORK/client-idle.log"
status=$?
set -e
if [ "$status" = 0 ] && cmp -s "$WORK/idle-expected" "$WORK/idle-back"; then
  pass "tern <-> tern, 30 s idle behind 12 s NAT timeouts"
else
  fail "tern <-> tern, 30 s idle behind 12 s NAT timeouts (exit $status, $(wc -c <"$WORK/idle-back") of 8192 bytes back)"
  tail -5 "$WORK/client-idle.log"
fi

echo "== JS behind a random NAT <-> tern behind a consistent one"
set_nat nat2 random
pk=$(tern_server a 3333333333333333333333333333333333333333333333333333333333333333)
js_client b "$pk" "JS client (b, random NAT) -> tern server (a)"

echo "== tern behind a random NAT -> servers behind a consistent one (birthday sockets)"
# b's NAT gives each of its sockets a new random port, a's lets in only what a's own
# mapping was opened to: b opens 255 extra sockets probing a's address, the server
# sprays b's host's ports until one lands on a mapping. Fresh servers: each node allows
# one random punch per 20 s.
pk=$(tern_server a 8888888888888888888888888888888888888888888888888888888888888888)
tern_client b "$pk" "tern client (b, random NAT) -> tern server (a)"
pk=$(js_server a 9999999999999999999999999999999999999999999999999999999999999999)
tern_client b "$pk" "tern client (b, random NAT) -> JS server (a)"

echo "== servers behind a random NAT <- clients behind a consistent one"
# The roles swapped: now the server's side opens the birthday sockets and the client
# sprays the server host's ports. Fresh servers again (one random punch per 20 s).
pk=$(tern_server b aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa)
tern_client a "$pk" "tern client (a) -> tern server (b, random NAT)"
pk=$(tern_server b bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb)
js_client a "$pk" "JS client (a) -> tern server (b, random NAT)"
pk=$(js_server b cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc)
tern_client a "$pk" "tern client (a) -> JS server (b, random NAT)"

echo "== tern behind a random NAT -> a reachable tern server"
out="$WORK/server-wan.out"
ip netns exec "$P-wan" "$TERN" listen --echo --firewalled false --port 49800 \
  --seed 5555555555555555555555555555555555555555555555555555555555555555 --bootstrap "$BOOT" \
  </dev/null >"$out" 2>"$WORK/server-wan.log" &
echo $! >>"$WORK/pids"
pk=$(first_line "$out")
tern_client b "$pk" "tern client (b, random NAT) -> reachable tern server (wan)"

[ "$failed" = 0 ] || { echo "nat-test: FAILED"; exit 1; }
echo "nat-test: all cases passed"
