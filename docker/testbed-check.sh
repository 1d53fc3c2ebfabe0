# shellcheck shell=bash disable=SC2154  # here, cache, project, compose_cmd: from testbed.sh
# The checks of `docker/testbed.sh check|run`, sourced by testbed.sh (which defines
# log, die, wait_for, compose, containers_of, ip_of, http_ok). Each check runs tern's
# own CLI inside the containers, so every datagram crosses the testbed's networks.

# (Pipelines into grep read to the end — no `grep -q` — since with pipefail an early
# exit of grep would fail the pipeline through the writer's SIGPIPE.)
readonly bootstrap_flags=(--bootstrap 10.88.0.11:49737 --bootstrap 10.88.0.12:49737
  --bootstrap 10.88.0.13:49737)

# The one container of a service.
the() {
  local c
  c=$(containers_of "$1" | head -n1)
  [ -n "$c" ] || die "no running container for service $1"
  echo "$c"
}

# A bounded `tern` probe inside container $1 against the bootstrap cluster.
probe() {
  local c=$1
  shift
  timeout 60 docker exec "$c" tern --log warn "$@" "${bootstrap_flags[@]}"
}

random_hex32() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

metrics() { curl -fsS --max-time 5 "http://$(ip_of "$1"):9180/metrics"; }

# The two profiles are one policy apart by exactly the io_uring calls, so the backend
# check below compares like with like (and an edit to one cannot silently miss the other).
check_profiles() {
  python3 - "$here/seccomp-default.json" "$here/seccomp-io_uring.json" <<'PY' \
    || die "seccomp profiles out of step"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
a.pop("comment"), b.pop("comment")
extra = set(b["syscalls"][0]["names"]) - set(a["syscalls"][0]["names"])
b["syscalls"][0]["names"] = [n for n in b["syscalls"][0]["names"] if n not in extra]
if extra != {"io_uring_setup", "io_uring_enter", "io_uring_register"} or a != b:
    sys.exit(f"seccomp-io_uring.json is not seccomp-default.json + io_uring (extra: {sorted(extra)})")
PY
  log "ok: seccomp-io_uring.json = seccomp-default.json + io_uring_{setup,enter,register}"
}

# seccomp: boot1 (seccomp-io_uring.json) runs io_uring; boot2 (seccomp-default.json,
# Docker's default policy) must fall back to epoll and say why in its log.
check_backends() {
  local boot1 boot2 boot3 b3
  boot1=$(the boot1) boot2=$(the boot2) boot3=$(the boot3)
  metrics "$boot1" | grep -F 'tern_io_backend{backend="io_uring"} 1' >/dev/null \
    || die "boot1 (seccomp-io_uring.json) is not on io_uring: $(metrics "$boot1" | grep tern_io_backend)"
  if docker logs "$boot1" 2>&1 | grep 'using the epoll backend' >/dev/null; then
    die "boot1 logged an epoll fallback despite seccomp-io_uring.json"
  fi
  metrics "$boot2" | grep -F 'tern_io_backend{backend="epoll"} 1' >/dev/null \
    || die "boot2 (seccomp-default.json) is not on epoll: $(metrics "$boot2" | grep tern_io_backend)"
  local why
  why=$(docker logs "$boot2" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | awk '/using the epoll backend/ && !n++')
  [ -n "$why" ] || die "boot2 fell back to epoll without saying so in its log"
  log "ok: seccomp-io_uring.json -> io_uring; seccomp-default.json -> epoll, logged: ${why#*WARN }"
  for c in $(containers_of node); do
    metrics "$c" | grep -F 'tern_io_backend{backend="io_uring"} 1' >/dev/null || die "$c is not on io_uring"
  done
  # Informational: the engine's built-in profile allows io_uring before Docker 25.
  b3=$(metrics "$boot3" | sed -n 's/^tern_io_backend{backend="\([a-z_]*\)"} 1$/\1/p')
  log "info: boot3 (the engine's built-in seccomp profile, Docker $(docker version -f '{{.Server.Version}}')) runs $b3"
}

# announce in one container, lookup in another, across both NATs; then the unannounce
# (on exit of `tern announce`) must take the record away again.
check_announce_lookup() {
  local from=$1 to=$2 topic seed out pk
  topic=$(random_hex32) seed=$(random_hex32)
  out=$(mktemp)
  # Stays announced for 10 s (time for the lookup), then unannounces and exits.
  timeout 90 docker exec "$from" tern --log warn announce "$topic" --seed "$seed" --for 10 \
    "${bootstrap_flags[@]}" >"$out" 2>&1 &
  local announcer=$!
  wait_for 60 "$from to announce" grep -q '^announced ' "$out"
  pk=$(awk '/^announced / { print $2 }' "$out")
  local found
  found=$(probe "$to" lookup "$topic") || die "lookup from $to found nothing ($(cat "$out"))"
  grep -q "^$pk " <<<"$found" || die "lookup from $to did not find $pk: $found"
  log "ok: $from announced $pk ($(sed -n 's/.* on \([0-9]*\) nodes/\1/p' "$out") nodes); $to found it"
  wait "$announcer" || die "tern announce in $from failed: $(cat "$out")"
  rm -f "$out"
  if found=$(probe "$to" lookup "$topic" 2>&1); then
    die "after the unannounce, $to still finds: $found"
  fi
  log "ok: after $from unannounced, $to finds nothing"
}

check_records() {
  local wan cons rand
  wan=$(containers_of node | head -n1) cons=$(the node-cons) rand=$(the node-rand)
  [ -n "$wan" ] || die "no node containers"
  check_announce_lookup "$cons" "$wan"
  check_announce_lookup "$wan" "$rand"

  local seed pk value got hash
  seed=$(random_hex32) value="testbed-$RANDOM"
  pk=$(probe "$rand" mutable-put --seed "$seed" "$value" --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["publicKey"])') \
    || die "mutable-put from $rand failed"
  got=$(probe "$wan" mutable-get "$pk") || die "mutable-get from $wan failed"
  [[ "$got" == "seq "*" $value" ]] || die "mutable-get from $wan: got '$got', want '$value'"
  hash=$(probe "$wan" immutable-put "$value") || die "immutable-put from $wan failed"
  got=$(probe "$cons" immutable-get "$hash") || die "immutable-get from $cons failed"
  [ "$got" = "$value" ] || die "immutable-get from $cons: got '$got', want '$value'"
  log "ok: mutable put behind the random NAT, get on the WAN; immutable put on the WAN, get behind the consistent NAT"
}

# The routers' conntrack tables after the traffic above: the consistent NAT kept each
# source port for every destination, the random one gave one source port several.
check_nat() {
  local mode router lan_host
  for mode in cons rand; do
    router=$(the "nat-$mode")
    lan_host=$([ $mode = cons ] && echo 10.88.1.10 || echo 10.88.2.10)
    timeout 30 docker exec "$router" conntrack -L -p udp -s "$lan_host" 2>/dev/null \
      | python3 -c '
import collections, re, sys
mode = sys.argv[1]
mapped = collections.defaultdict(set)   # source port -> ports seen on the WAN side
dests = collections.defaultdict(set)    # source port -> destinations
for line in sys.stdin:
    kv = re.findall(r"(\w+)=(\S+)", line)
    sport = [v for k, v in kv if k == "sport"]
    dport = [v for k, v in kv if k == "dport"]
    dst = [v for k, v in kv if k == "dst"]
    if len(sport) < 2 or len(dport) < 2:
        continue
    mapped[sport[0]].add(dport[1])
    dests[sport[0]].add((dst[0], dport[0]))
multi = [p for p in mapped if len(dests[p]) >= 2]
if not multi:
    sys.exit(f"{mode}: no source port talked to two destinations ({len(mapped)} flows)")
if mode == "cons":
    bad = {p: m for p, m in mapped.items() if m != {p}}
    if bad:
        sys.exit(f"cons: ports not kept: {bad}")
    print(f"{len(multi)} source ports, each kept for every destination (up to {max(len(dests[p]) for p in multi)})")
else:
    if not any(len(mapped[p]) >= 2 for p in multi):
        sys.exit(f"rand: every source port kept one mapping: {dict(mapped)}")
    p = max(multi, key=lambda p: len(mapped[p]))
    print(f"source port {p} mapped to {len(mapped[p])} ports for {len(dests[p])} destinations")
' "$mode" >"$cache/nat-$mode.txt" || die "NAT $mode: $(cat "$cache/nat-$mode.txt")"
    log "ok: nat-$mode: $(cat "$cache/nat-$mode.txt")"
  done
}

# An encrypted stream to a server behind the consistent NAT, from a client on the WAN:
# `tern listen --echo` in node-cons, `tern connect` in a node container, bytes back.
# (Both sides behind NATs needs holepunching; see scripts/nat-test.sh for that matrix.)
check_connect() {
  local server client seed out pk echoed
  server=$(the node-cons) client=$(containers_of node | head -n1)
  seed=$(random_hex32) out=$(mktemp)
  # TERN_ADMIN: the container's node already holds the admin port. The listener serves
  # until its container stops (check_stop), which also ends this docker exec.
  timeout 300 docker exec -e TERN_ADMIN=127.0.0.1:9181 "$server" tern --log warn listen \
    --seed "$seed" --echo "${bootstrap_flags[@]}" >"$out" 2>&1 &
  wait_for 30 "tern listen in $server" grep -Eq '^[0-9a-f]{64}$' "$out"
  pk=$(head -n1 "$out")
  # --firewalled false: the client is on the WAN, reachable (`tern connect` assumes a
  # NAT unless told, and then the pair must holepunch).
  echoed=$(echo "through the NAT" | timeout 60 docker exec -i -e TERN_ADMIN=127.0.0.1:9182 \
    "$client" tern --log warn connect "$pk" --firewalled false "${bootstrap_flags[@]}" 2>&1) \
    || die "tern connect from $client to $pk failed: $echoed"
  [ "$echoed" = "through the NAT" ] || die "echo from $server: '$echoed'"
  log "ok: encrypted stream from $client to a server behind nat-cons, echoed"
  rm -f "$out"
}

# loadgen from its own container at boot1, below boot1's per-IP rate limit.
check_loadgen() {
  local out boot1 before after
  boot1=$(the boot1)
  find_nodes() {
    metrics "$boot1" | awk '/^tern_requests_total\{.*command="find_node"/ { print $2 }'
  }
  before=$(find_nodes)
  out=$(cd "$here" && timeout 120 "${compose_cmd[@]}" -p "$project" -f compose.yml run --rm -T loadgen 2>/dev/null) \
    || die "loadgen failed: $out"
  after=$(find_nodes)
  # boot1's own count of FIND_NODE requests must account for every answer loadgen got.
  python3 -c '
import json, sys
s = [json.loads(l) for l in sys.stdin if l.startswith("{")]
if not s:
    sys.exit("no summary line")
s = s[-1]
counted = int(float(sys.argv[2])) - int(float(sys.argv[1]))
print("{op}: sent {sent}, ok {ok} ({ok_ratio:.4f}), p50 {p50_us} us, p99 {p99_us} us;".format(**s),
      f"boot1 /metrics counted {counted} find_node requests")
if s["sent"] == 0 or s["ok_ratio"] < 0.99:
    sys.exit("ok ratio below 0.99")
if counted < s["ok"]:
    sys.exit("boot1 counted %d requests, fewer than the %d answered" % (counted, s["ok"]))
' "$before" "$after" <<<"$out" >"$cache/loadgen.txt" || die "loadgen: $(cat "$cache/loadgen.txt"): $out"
  log "ok: loadgen raw -> boot1: $(cat "$cache/loadgen.txt")"
}

# SIGTERM (docker stop) must end every tern container cleanly: exit 0 and `stopped`.
check_stop() {
  local ids c code
  ids=$(compose ps -q)
  (cd "$here" && timeout 60 "${compose_cmd[@]}" -p "$project" -f compose.yml stop -t 15 >/dev/null 2>&1) \
    || die "compose stop timed out"
  for c in $ids; do
    code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
    [ "$code" = 0 ] || die "$(docker inspect -f '{{.Name}}' "$c") exited $code on SIGTERM"
  done
  log "ok: every container exited 0 on SIGTERM"
}

# docker/tern.service under a real systemd: PID 1 of a `tools` container with no network
# but loopback. The unit must start tern as a dynamic user with no capabilities under
# its seccomp filter, on io_uring with two pinned shards, stop it cleanly, and, with
# io_uring taken out of the filter by a drop-in, run on epoll and log why.
readonly systemd_container=tern-testbed-systemd

check_systemd() {
  local c=$systemd_container out
  docker rm -f "$c" >/dev/null 2>&1 || true
  docker run -d --name "$c" --network none --cap-add SYS_ADMIN \
    --security-opt seccomp=unconfined --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp "$TERN_TOOLS_IMAGE" /lib/systemd/systemd >/dev/null
  wait_for 60 "systemd to boot in $c" bash -c \
    "docker exec $c systemctl is-system-running --wait | grep -Eq '^(running|degraded)$'"
  docker cp "$here/tern.service" "$c:/etc/systemd/system/tern.service"
  out=$(systemd_script | timeout 120 docker exec -i "$c" bash -s 2>&1) \
    || die "tern.service under systemd: $out"
  while read -r line; do log "$line"; done <<<"$out"
  docker rm -f "$c" >/dev/null
}

# What check_systemd runs inside the container.
systemd_script() {
  cat <<'SH'
set -euo pipefail
fail() { echo "FAIL: $*"; journalctl -u tern --no-pager | tail -n 20; exit 1; }
# A local network: a bootstrap node on 127.0.0.1:49736 (a transient unit), and the
# unit's node configured from `tern config print` to join it on two cores.
systemd-run --quiet --unit tern-boot /usr/local/bin/tern bootstrap --host 127.0.0.1 --port 49736
mkdir -p /etc/tern
tern config print | sed -e 's/^port = 0/port = 49737/' \
  -e 's/^bootstrap = \[\]/bootstrap = ["127.0.0.1:49736"]/' -e 's/^cores = [0-9]*/cores = 2/' \
  -e 's/^\[admin\]/[admin]\nlisten = "127.0.0.1:9180"/' >/etc/tern/tern.toml
systemd-analyze verify /etc/systemd/system/tern.service || fail "systemd-analyze verify"
metrics() { curl -fsS --max-time 2 127.0.0.1:9180/metrics; }
start() {
  systemctl daemon-reload
  systemctl start tern
  for _ in $(seq 30); do curl -fsS --max-time 1 127.0.0.1:9180/healthz >/dev/null 2>&1 && return; sleep 0.5; done
  fail "tern.service did not answer /healthz"
}
stop() {
  systemctl stop tern
  [ "$(systemctl show tern -p ExecMainStatus --value)" = 0 ] || fail "exit status on stop"
}
start
pid=$(systemctl show tern -p MainPID --value)
status=$(cat "/proc/$pid/status")
grep -Eq '^Uid:\s+[1-9]' <<<"$status" || fail "runs as root"
grep -q '^CapEff:\s*0000000000000000' <<<"$status" || fail "has capabilities"
grep -q '^NoNewPrivs:\s*1' <<<"$status" || fail "NoNewPrivs off"
grep -q '^Seccomp:\s*2' <<<"$status" || fail "no seccomp filter"
[ -d /var/lib/private/tern ] || fail "no StateDirectory"
metrics | grep -F 'tern_io_backend{backend="io_uring"} 1' >/dev/null || fail "not on io_uring"
journalctl -u tern --no-pager | grep 'sharded node started cores=2' >/dev/null || fail "not sharded on 2 cores"
stop
journalctl -u tern --no-pager | grep ' stopped ' >/dev/null || fail "no clean stop in the log"
# The clean stop writes the routing-table snapshot into the StateDirectory.
[ -s /var/lib/private/tern/routing-table-0.bin ] || fail "no snapshot in /var/lib/tern"
echo "ok: tern.service: dynamic uid $(awk '/^Uid:/ { print $2 }' <<<"$status"), no capabilities, NoNewPrivs, seccomp filter, io_uring on 2 cores, exit 0 on stop, snapshot in /var/lib/tern"
mkdir -p /etc/systemd/system/tern.service.d
printf '[Service]\nSystemCallFilter=~io_uring_setup io_uring_enter io_uring_register\n' \
  >/etc/systemd/system/tern.service.d/no-io_uring.conf
start
metrics | grep -F 'tern_io_backend{backend="epoll"} 1' >/dev/null || fail "not on epoll without io_uring"
why=$(journalctl -u tern --no-pager -o cat | grep 'using the epoll backend' | tail -n1)
[ -n "$why" ] || fail "epoll fallback not logged"
stop
echo "ok: tern.service with io_uring filtered out: epoll, logged: ${why#*WARN }"
SH
}

check() {
  local start=$SECONDS
  check_profiles
  check_backends
  check_records
  check_nat
  check_connect
  check_loadgen
  check_stop
  check_systemd
  log "checks passed in $((SECONDS - start))s"
}
