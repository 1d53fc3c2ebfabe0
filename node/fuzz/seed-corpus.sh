#!/usr/bin/env bash
# Seeds corpus/<target>/ with the byte-exact vectors the JS reference produced
# (testdata/vectors), so libFuzzer starts from real messages instead of rediscovering
# each layout from nothing. Safe to re-run: files are named by content hash.
#
#   node/fuzz/seed-corpus.sh            # from anywhere
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vectors="$here/../../testdata/vectors"

python3 - "$vectors" "$here/corpus" <<'PY'
import hashlib, json, pathlib, sys

vectors, corpus = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

# Selector bytes: the first input byte picks the decoder in these two targets (see
# fuzz_targets/hyperdht_values.rs and handshake_values.rs). Vector name prefix -> byte.
HYPERDHT = [("peer-record", 0), ("find-peer-reply-value", 0), ("announce-value", 1),
            ("unannounce-value", 1), ("lookup-reply-value", 2), ("mutable-put-value", 3),
            ("mutable-get-reply-value", 4), ("plugin-request-value", 5)]
HANDSHAKE = [("handshake-", 0), ("holepunch-from-", 1), ("holepunch-reply", 1),
             ("noise-payload-", 2), ("holepunch-payload-probe", 3),
             ("holepunch-payload-punch", 3), ("holepunch-payload-abort", 3)]

counts = {}
def put(target, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
    counts[target] = counts.get(target, 0) + 1

def hexes(node, name=""):
    """Every (vector name, bytes) pair in a JSON tree: any string field named `hex`."""
    if isinstance(node, dict):
        name = node.get("name", name) if isinstance(node.get("name"), str) else name
        for k, v in node.items():
            if k == "hex" and isinstance(v, str):
                try:
                    yield name, bytes.fromhex(v)
                except ValueError:
                    pass
            else:
                yield from hexes(v, name)
    elif isinstance(node, list):
        for v in node:
            yield from hexes(v, name)

for path in sorted(vectors.rglob("*.json")):
    for name, data in hexes(json.loads(path.read_text())):
        # Datagrams are routed by their first bytes, as a node's socket demux does.
        if data[:1] in (b"\x03", b"\x13"):
            put("rpc_message", data)
        if len(data) >= 20 and data[:2] == b"\xff\x01":
            put("udx_packet", data)
        for prefix, sel in HYPERDHT:
            if name.startswith(prefix):
                put("hyperdht_values", bytes([sel]) + data)
        for prefix, sel in HANDSHAKE:
            if name.startswith(prefix):
                put("handshake_values", bytes([sel]) + data)

for target, n in sorted(counts.items()):
    print(f"{target}: {n} seeds")
PY
