#!/usr/bin/env bash
# Runs every test of tern on a fresh Linux machine: formatting, lints, the sans-IO
# guard, unit, golden-vector and property tests. Installs what it needs first.
# `.ci/run` calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "core crates share one clippy.toml (bans clocks, sockets, threads, OS randomness)"
for crate in crypto node/base node/wire node/rpc node/dht node/udx node/core node/swarm node/netsim node/sim; do
  [ -d "$crate" ] || continue
  cmp -s core-clippy.toml "$crate/clippy.toml" || { echo "$crate/clippy.toml differs from core-clippy.toml"; exit 1; }
done

step "JS reference for the interop tests (npm ci in interop/)"
command -v node >/dev/null || { echo "Node.js is required for the interop tests"; exit 1; }
(cd interop && npm ci --no-audit --no-fund)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "fuzz targets still compile (node/fuzz is outside the workspace; see its README to run them)"
cargo check --manifest-path node/fuzz/Cargo.toml --bins

step "cargo test"
cargo test --workspace

step "interop on each driver backend, one and two shards per tern node (TERN_IO x TERN_CORES)"
# TERN_CORES makes the tests' tern nodes sharded (node/tests/support: Dht::start_sharded);
# the run above used auto and one shard.
for io in epoll uring; do
  for cores in 1 2; do
    echo "-- TERN_IO=$io TERN_CORES=$cores"
    TERN_IO=$io TERN_CORES=$cores cargo test -p tern --test interop
  done
done
# Encrypted connections (UDX streams) on the epoll backend too (the main run used auto).
TERN_IO=epoll cargo test -p tern --test connect

step "holepunching through real NATs (network namespaces + nftables routers; needs root)"
command -v nft >/dev/null || { { apt-get install -y -q nftables || { apt-get update -q && apt-get install -y -q nftables; }; } >/dev/null || { echo "nftables is required (apt-get install nftables)"; exit 1; }; }
cargo build -p tern
./scripts/nat-test.sh

step "tern-sim swarm runs: fixed seeds plus two fresh ones (a failing seed prints its reproduction line)"
cargo build -p tern-sim
fresh=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
fresh2=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
echo "fresh seeds this run: $fresh $fresh2"
sim_failed=0
for seed in 3 6 13 14 17 19 "$fresh" "$fresh2"; do
  ./target/debug/tern-sim --seed "$seed" --nodes 300 --minutes 30 || sim_failed=1
done
[ "$sim_failed" = 0 ] || { echo "tern-sim: a seed failed (see its reproduction line above)"; exit 1; }

step "netbench pipeline at tiny scale (plans/ci.toml: proves it works, asserts nothing about speed)"
cargo build -p tern -p tern-loadgen -p tern-netbench
./target/debug/netbench run netbench/plans/ci.toml --out target/netbench-ci > /dev/null
test -s target/netbench-ci/report.md && test -s target/netbench-ci/ping-capacity-latency.svg \
  && test -s target/netbench-ci/connect-open-cdf.svg && grep -q "stream-1x2" target/netbench-ci/report.md \
  && grep -q "P3 (announce-capacity" target/netbench-ci/report.md \
  && test -s target/netbench-ci/lookup-network-percentiles.svg

step "docker testbed: bootstrap cluster, nodes behind consistent and random NATs, seccomp backends, loadgen (docker/testbed.sh run)"
# CI starts from a fresh Debian machine as root: Debian's Docker engine and compose, and
# debootstrap for the NAT routers' image, are installed here when missing. testbed.sh
# builds the static release binaries (target/x86_64-unknown-linux-gnu, apart from the
# builds above), starts dockerd if needed and stops it again, and tears the testbed down
# whatever happens.
missing=()
for pkg in docker.io:dockerd docker-compose:docker-compose debootstrap:debootstrap \
  iptables:iptables curl:curl python3:python3; do
  command -v "${pkg#*:}" >/dev/null || missing+=("${pkg%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
./docker/testbed.sh run
