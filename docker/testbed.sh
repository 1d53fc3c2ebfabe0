#!/usr/bin/env bash
# The docker testbed of tern (docker/compose.yml): a private HyperDHT network of
# containers on this host, built and checked without pulling any image.
#
#   docker/testbed.sh images   build the static binaries and the images only
#   docker/testbed.sh up       images + start dockerd if needed + compose up (stays up)
#   docker/testbed.sh check    lookups, announces, records, NAT mappings, seccomp
#                              backends, loadgen and clean stops against a running
#                              testbed, then docker/tern.service under systemd
#   docker/testbed.sh run      up + check + down (down runs whatever happens: the CI test)
#   docker/testbed.sh down     remove the containers and networks (and stop dockerd if
#                              this script started it)
#
# Needs: root (dockerd, debootstrap), cargo, docker (engine + CLI), docker-compose or
# the compose plugin, debootstrap, curl, python3, iptables. On Debian:
#   apt-get install -y docker.io docker-compose debootstrap curl python3
#
# Images (see docker/Dockerfile):
#   tern-testbed:static  FROM scratch + tern and tern-loadgen linked statically
#   tern-testbed:tools   Debian minbase (debootstrap from this host's apt sources,
#                        imported with `docker import`) + nftables, iproute2, conntrack,
#                        systemd + the same binaries: the NAT routers, the nodes behind
#                        them, and the systemd unit's check
# The debootstrap tarball is cached in $TERN_TESTBED_CACHE (default
# /var/cache/tern-testbed) and the imported image is kept, so a rerun skips both.
#
# Environment: TERN_TESTBED_NODES (node containers, default 3, each running
# TERN_TESTBED_NODES_PER_CONTAINER=7 nodes), CARGO_TARGET_DIR, TERN_TESTBED_CACHE.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

readonly project=tern-testbed
readonly triple=x86_64-unknown-linux-gnu
readonly target_dir=${CARGO_TARGET_DIR:-$repo/target}
readonly bin_dir=$target_dir/$triple/release
readonly cache=${TERN_TESTBED_CACHE:-/var/cache/tern-testbed}
readonly nodes=${TERN_TESTBED_NODES:-3}
readonly nodes_per_container=${TERN_TESTBED_NODES_PER_CONTAINER:-7}
# nftables, iproute2, conntrack: the NAT routers; systemd, curl: tern.service's check.
readonly base_packages=nftables,iproute2,conntrack,systemd,systemd-sysv,curl
export TERN_IMAGE=tern-testbed:static
export TERN_TOOLS_IMAGE=tern-testbed:tools
export TERN_NODES_PER_CONTAINER=$nodes_per_container

log() { printf '[testbed %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# Polls `$@` every second until it succeeds; fails after $1 seconds. Every wait in this
# script goes through here or `timeout`, so a stuck testbed fails instead of hanging CI.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${limit}s waiting for $what"
    sleep 1
  done
}

# The compose plugin where it exists, else Debian's docker-compose (v1).
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  compose_cmd=(docker-compose)
fi
# From docker/: docker-compose v1 reads seccomp=./… paths relative to the working
# directory (the plugin: to the compose file).
compose() { (cd "$here" && "${compose_cmd[@]}" -p "$project" -f compose.yml "$@"); }

need_tools() {
  local missing=()
  for t in cargo docker debootstrap curl python3 iptables; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  command -v "${compose_cmd[0]}" >/dev/null || missing+=(docker-compose)
  [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (see the top of $0)"
}

# --- the Docker engine ---------------------------------------------------------------

start_dockerd() {
  docker info >/dev/null 2>&1 && return
  [ "$(id -u)" = 0 ] || die "the Docker engine is not running and only root can start it"
  mkdir -p "$cache"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    log "starting docker.service"
    systemctl start docker
  else
    # No init system to ask (a container or a bare VM): run dockerd ourselves, detached,
    # and remember its pid so `down` stops only what this script started.
    command -v dockerd >/dev/null || die "no dockerd (apt-get install docker.io)"
    log "starting dockerd (log: $cache/dockerd.log)"
    setsid dockerd >"$cache/dockerd.log" 2>&1 </dev/null &
    echo $! >"$cache/dockerd.pid"
  fi
  wait_for 60 "the Docker engine" docker info
}

stop_dockerd() {
  [ -f "$cache/dockerd.pid" ] || return 0
  local pid
  pid=$(cat "$cache/dockerd.pid")
  rm -f "$cache/dockerd.pid"
  kill -0 "$pid" 2>/dev/null || return 0
  log "stopping the dockerd this script started (pid $pid)"
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 1; done
}

# --- images --------------------------------------------------------------------------

build_binaries() {
  log "cargo build --release --target $triple -p tern -p tern-loadgen (+crt-static)"
  # An explicit --target keeps these artifacts apart from the host build in
  # target/release, so the static flags never invalidate it.
  # RUSTFLAGS replaces .cargo/config.toml's rustflags, so its cfg is repeated here.
  (cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static --cfg chacha20_avx512' \
    cargo build --release --locked --target "$triple" -p tern -p tern-loadgen)
}

# The first Debian mirror of this host's apt sources (deb822 .sources or one-line .list),
# so debootstrap fetches from where apt already does.
debian_mirror() {
  local m
  m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ { print $2 }' | grep -v security | head -n1 || true)
  [ -n "$m" ] || m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
    | head -n1 || true)
  [ -n "$m" ] || die "no Debian mirror in /etc/apt/sources.list*"
  echo "$m"
}

# tern-testbed-base:<suite>-<hash>: a Debian minbase with the NAT tools, made by
# debootstrap and `docker import` (no registry). Reused while suite, mirror and package
# list are unchanged.
base_image() {
  local suite mirror key tag tarball
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:?}")
  mirror=$(debian_mirror)
  key=$(printf '%s %s %s' "$suite" "$mirror" "$base_packages" | sha256sum | cut -c1-12)
  tag=tern-testbed-base:$suite-$key
  tarball=$cache/base-$suite-$key.tar
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    return
  fi
  mkdir -p "$cache"
  if [ ! -s "$tarball" ]; then
    log "debootstrap --variant=minbase $suite from $mirror (+ $base_packages)"
    local root
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    timeout 900 debootstrap --variant=minbase --include="$base_packages" \
      "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { rm -rf "$root"; tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap failed"; }
    # Nothing in the image installs packages later: drop apt's caches and the docs.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  log "docker import $tarball -> $tag"
  docker import "$tarball" "$tag" >/dev/null
  echo "$tag"
}

build_images() {
  build_binaries
  local base ctx
  base=$(base_image)
  # A context of three files, not the repository (whose target/ holds gigabytes).
  ctx=$(mktemp -d)
  mkdir "$ctx/bin"
  # Line tables (the release profile keeps them for backtraces) are 80 % of the binary;
  # the symbols stay, so a panic still names its functions.
  local b
  for b in tern tern-loadgen; do
    strip --strip-debug -o "$ctx/bin/$b" "$bin_dir/$b" 2>/dev/null || cp "$bin_dir/$b" "$ctx/bin/$b"
  done
  cp "$here/nat-router.sh" "$ctx/nat-router.sh"
  # The classic builder, on purpose: it needs no buildx plugin, works with any CLI
  # against any engine, and builds only the stages up to --target (the `static` and
  # `tools` stages come first in the Dockerfile), so nothing is pulled.
  log "docker build --target static -> $TERN_IMAGE"
  DOCKER_BUILDKIT=0 docker build -q -f "$here/Dockerfile" --target static \
    -t "$TERN_IMAGE" "$ctx" >/dev/null
  log "docker build --target tools (on $base) -> $TERN_TOOLS_IMAGE"
  DOCKER_BUILDKIT=0 docker build -q -f "$here/Dockerfile" --target tools \
    --build-arg TOOLS_IMAGE="$base" -t "$TERN_TOOLS_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  for image in "$TERN_IMAGE" "$TERN_TOOLS_IMAGE"; do
    log "image $image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
  done
  # The scratch image has no libc: this fails unless the binary really is static.
  timeout 30 docker run --rm "$TERN_IMAGE" --version >/dev/null \
    || die "$TERN_IMAGE cannot run tern (not statically linked?)"
}

# --- up / down -----------------------------------------------------------------------

# IPv4 address of a compose container on the wan (or its only) network.
ip_of() {
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$1" | awk '{ print $1 }'
}

# Containers of one service, by name.
containers_of() {
  docker ps --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | sort
}

# The LAN bridges whose routed traffic Docker's isolation rules would drop (see the end
# of compose.yml); DOCKER-USER is the chain Docker leaves to the administrator and
# evaluates first.
readonly lan_bridges=(tern-lan-cons tern-lan-rand)

allow_routed_lans() {
  local br
  for br in "${lan_bridges[@]}"; do
    iptables -C DOCKER-USER -i "$br" -o "$br" -j ACCEPT 2>/dev/null \
      || iptables -I DOCKER-USER -i "$br" -o "$br" -j ACCEPT
  done
}

remove_lan_rules() {
  local br
  for br in "${lan_bridges[@]}"; do
    while iptables -D DOCKER-USER -i "$br" -o "$br" -j ACCEPT 2>/dev/null; do :; done
  done
}

http_ok() { curl -fsS --max-time 2 "http://$1:9180$2"; }

up() {
  need_tools
  start_dockerd
  build_images
  # A testbed left over from an interrupted run holds the fixed addresses.
  compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
  log "compose up: 3 bootstrap nodes, $nodes node containers x $nodes_per_container nodes, 2 NAT routers with a node behind each"
  local start=$SECONDS
  allow_routed_lans
  compose up -d --scale node="$nodes"
  local svc c
  for svc in boot1 boot2 boot3 node node-cons node-rand; do
    for c in $(containers_of "$svc"); do
      wait_for 30 "$c to answer /healthz" http_ok "$(ip_of "$c")" /healthz
    done
  done
  # /readyz: persistent and a routing table of at least k = 20 nodes. A bootstrap node
  # has no bootstrap list of its own, so it learns only the nodes that contact it: the
  # WAN needs at least 20 ordinary nodes (3 x 7 by default) for boot1-3 to be ready.
  for svc in boot1 boot2 boot3 node; do
    for c in $(containers_of "$svc"); do
      wait_for 90 "$c to be ready (/readyz)" http_ok "$(ip_of "$c")" /readyz
    done
  done
  log "testbed up and ready in $((SECONDS - start))s"
}

down() {
  if docker info >/dev/null 2>&1; then
    log "compose down"
    (cd "$here" && timeout 120 "${compose_cmd[@]}" -p "$project" -f compose.yml \
      down -v --remove-orphans -t 15) || log "compose down failed"
    remove_lan_rules
    docker rm -f "$systemd_container" >/dev/null 2>&1 || true
  fi
  stop_dockerd
}

# shellcheck source-path=SCRIPTDIR source=testbed-check.sh
source "$here/testbed-check.sh"

# `run`'s exit: the logs first when something failed, then down, whatever happened
# (failure, timeout, Ctrl-C).
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    compose logs --no-color --tail 40 2>/dev/null || true
  fi
  down
  exit "$rc"
}

case "${1:-}" in
  images) need_tools; start_dockerd; build_images ;;
  up) up ;;
  check) check ;;
  down) down ;;
  run)
    trap on_exit EXIT
    start=$SECONDS
    up
    check
    log "testbed run passed in $((SECONDS - start))s"
    ;;
  *) echo "usage: $0 images|up|check|run|down" >&2; exit 2 ;;
esac
