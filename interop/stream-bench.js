// The JS side of netbench's connect and stream workloads (hyperdht 6.34.0): the same
// processes and the same wire protocol as `tern-loadgen serve|connect|stream`, so the
// tern<->tern and JS<->JS figures are measured the same way, and a tern client can
// drive a JS server (or the reverse).
//
// Usage (every address is on 127.0.0.0/8; each mode exits when stdin closes or when
// its work is done):
//   node stream-bench.js testnet '{"port":P,"nodes":3}'
//     a bootstrap node on 127.0.0.1:P plus `nodes` persistent nodes (createTestnet);
//     prints {"event":"ready","bootstrap":"127.0.0.1:P"}.
//   node stream-bench.js serve '{"bootstrap":"127.0.0.1:P","seed":hex32}'
//     listens as the key pair of `seed`; prints {"event":"listening","publicKey":hex}.
//     Every connection speaks the sink protocol (below).
//   node stream-bench.js connect '{"bootstrap","publicKey","connects":N,"concurrency":C,
//                                  "warmup":W,"timeoutMs":T}'
//     W unrecorded connects, then N connects with C in flight; each one opens, sends the
//     one-byte header and ends, and waits for the server's report. Prints one JSON line:
//     {"op":"connect","impl":"js","ok","failed","open_us":[..],"reply_us":[..],"seconds",
//      "cpu_s"}.
//   node stream-bench.js stream '{"bootstrap","publicKey","bytes":B,"streams":M,
//                                 "verify":"crc32"|"count","warmupBytes":n,"timeoutMs":T}'
//     opens M streams, then sends B bytes one way on each at once. Prints one JSON line:
//     {"op":"stream","impl":"js","ok","failed","bytes_per_stream","mb_per_s",
//      "stream_mb_per_s":[..],"seconds","cpu_s"}.
//
// Sink protocol: the client sends one header byte (0 = count only, 1 = CRC-32 too), then
// its payload, then ends its side. The server answers with 12 bytes, the payload length
// (u64 LE) and its CRC-32 (u32 LE, 0 when not asked), then ends its side.
//
// Time to open = from dht.connect() until the socket's 'open' event: the Noise IK
// handshake through a relay is complete on both sides and the UDX stream is connected
// to the server's address; no application byte has crossed yet. Reply = from
// dht.connect() until the server's report has arrived (open + one data round trip).
'use strict'

const DHT = require('hyperdht')
const createTestnet = require('hyperdht/testnet')
const zlib = require('zlib')

const [mode, json] = process.argv.slice(2)
const opts = JSON.parse(json || '{}')
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const hex = (b) => Buffer.from(b).toString('hex')
const now = () => process.hrtime.bigint()
const micros = (a, b) => Number(b - a) / 1e3

// The payload pattern, identical to tern-loadgen's: 1 MiB repeated.
const BLOCK = 1 << 20
const CHUNK = 64 * 1024
const block = Buffer.alloc(BLOCK)
for (let j = 0; j < BLOCK; j++) block[j] = Math.imul(j, 2654435761 | 0) >>> 24
const REPORT_BYTES = 12

function bootstrapList () {
  const b = opts.bootstrap
  return Array.isArray(b) ? b : [b]
}

function makeDht () {
  // Reachable (not firewalled) so that connects take the direct path on loopback, as
  // tern-loadgen's nodes; ephemeral as hyperdht's default client.
  return new DHT({ bootstrap: bootstrapList(), host: '127.0.0.1', firewalled: false })
}

function onStdinEnd (fn) {
  process.stdin.resume()
  process.stdin.on('end', fn)
  process.on('SIGTERM', fn)
}

async function testnet () {
  const port = Number(opts.port)
  const net = await createTestnet(1 + (opts.nodes || 3), { host: '127.0.0.1', port })
  out({ event: 'ready', bootstrap: `127.0.0.1:${port}` })
  onStdinEnd(async () => {
    await net.destroy()
    process.exit(0)
  })
}

async function serve () {
  const dht = makeDht()
  await dht.fullyBootstrapped()
  const keyPair = DHT.keyPair(Buffer.from(opts.seed, 'hex'))
  const server = dht.createServer((socket) => {
    let header = null
    let bytes = 0
    let crc = 0
    socket.on('data', (d) => {
      if (header === null) {
        header = d[0]
        d = d.subarray(1)
      }
      bytes += d.length
      if (header === 1 && d.length > 0) crc = zlib.crc32(d, crc)
    })
    socket.on('end', () => {
      const report = Buffer.alloc(REPORT_BYTES)
      report.writeBigUInt64LE(BigInt(bytes), 0)
      report.writeUInt32LE(crc >>> 0, 8)
      socket.end(report)
    })
    socket.on('error', () => {})
  })
  await server.listen(keyPair)
  out({ event: 'listening', publicKey: hex(keyPair.publicKey) })
  onStdinEnd(async () => {
    await server.close()
    await dht.destroy()
    process.exit(0)
  })
}

// One connection: resolves { openUs, socket } once open, or rejects.
function open (dht, publicKey, timeoutMs) {
  return new Promise((resolve, reject) => {
    const start = now()
    const socket = dht.connect(publicKey)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error('open timed out'))
    }, timeoutMs)
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.once('open', () => {
      clearTimeout(timer)
      resolve({ start, openUs: micros(start, now()), socket })
    })
  })
}

// Sends the header and `total` payload bytes, ends, and resolves the server's report.
function sink (socket, header, total, timeoutMs) {
  return new Promise((resolve, reject) => {
    const chunks = []
    let got = 0
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error('transfer timed out'))
    }, timeoutMs)
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('data', (d) => {
      chunks.push(d)
      got += d.length
    })
    socket.on('end', () => {
      clearTimeout(timer)
      const r = Buffer.concat(chunks)
      if (got !== REPORT_BYTES) return reject(new Error(`bad report (${got} bytes)`))
      resolve({ bytes: Number(r.readBigUInt64LE(0)), crc: r.readUInt32LE(8), at: now() })
      socket.end()
    })
    socket.write(Buffer.from([header]))
    let off = 0
    const pump = () => {
      while (off < total) {
        const at = off % BLOCK
        const n = Math.min(CHUNK, total - off, BLOCK - at)
        const more = socket.write(block.subarray(at, at + n))
        off += n
        if (!more) return socket.once('drain', pump)
      }
      socket.end()
    }
    pump()
  })
}

function expectedCrc (total) {
  let crc = 0
  for (let off = 0; off < total; off += BLOCK) {
    crc = zlib.crc32(block.subarray(0, Math.min(BLOCK, total - off)), crc)
  }
  return crc >>> 0
}

function cpuSeconds (since) {
  const u = process.cpuUsage(since)
  return (u.user + u.system) / 1e6
}

async function connectBench () {
  const dht = makeDht()
  await dht.fullyBootstrapped()
  const publicKey = Buffer.from(opts.publicKey, 'hex')
  const timeoutMs = opts.timeoutMs || 10000
  const one = async () => {
    const o = await open(dht, publicKey, timeoutMs)
    const r = await sink(o.socket, 0, 0, timeoutMs)
    if (r.bytes !== 0) throw new Error('server counted bytes that were not sent')
    return { openUs: o.openUs, replyUs: micros(o.start, r.at) }
  }
  for (let i = 0; i < (opts.warmup || 0); i++) await one().catch(() => {})
  const openUs = []
  const replyUs = []
  let failed = 0
  let next = 0
  const total = opts.connects || 100
  const cpu = process.cpuUsage()
  const start = now()
  const worker = async () => {
    while (next < total) {
      next++
      try {
        const r = await one()
        openUs.push(Math.round(r.openUs))
        replyUs.push(Math.round(r.replyUs))
      } catch {
        failed++
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency || 1) }, worker))
  out({
    op: 'connect',
    impl: 'js',
    ok: openUs.length,
    failed,
    open_us: openUs,
    reply_us: replyUs,
    seconds: micros(start, now()) / 1e6,
    cpu_s: cpuSeconds(cpu)
  })
  await dht.destroy()
}

async function streamBench () {
  const dht = makeDht()
  await dht.fullyBootstrapped()
  const publicKey = Buffer.from(opts.publicKey, 'hex')
  const timeoutMs = opts.timeoutMs || 120000
  const verify = opts.verify === 'crc32'
  const total = opts.bytes
  const streams = Math.max(1, opts.streams || 1)
  const want = verify ? expectedCrc(total) : 0
  if (opts.warmupBytes) {
    const w = await open(dht, publicKey, timeoutMs)
    await sink(w.socket, 0, opts.warmupBytes, timeoutMs)
  }
  const opened = await Promise.all(
    Array.from({ length: streams }, () => open(dht, publicKey, timeoutMs))
  )
  const cpu = process.cpuUsage()
  const start = now()
  const results = await Promise.all(
    opened.map((o) => sink(o.socket, verify ? 1 : 0, total, timeoutMs).catch(() => null))
  )
  const seconds = micros(start, now()) / 1e6
  const cpuS = cpuSeconds(cpu)
  const good = results.filter((r) => r && r.bytes === total && (!verify || r.crc === want))
  out({
    op: 'stream',
    impl: 'js',
    ok: good.length,
    failed: streams - good.length,
    verify: verify ? 'crc32' : 'count',
    bytes_per_stream: total,
    mb_per_s: (good.length * total) / seconds / 1e6,
    stream_mb_per_s: good.map((r) => total / (micros(start, r.at) / 1e6) / 1e6),
    seconds,
    cpu_s: cpuS
  })
  await dht.destroy()
}

const modes = { testnet, serve, connect: connectBench, stream: streamBench }
if (!modes[mode]) {
  process.stderr.write('usage: node stream-bench.js testnet|serve|connect|stream <json>\n')
  process.exit(2)
}
modes[mode]().then(
  () => {
    if (mode === 'connect' || mode === 'stream') process.exit(0)
  },
  (err) => {
    out({ event: 'error', error: String(err && err.message) })
    process.exit(1)
  }
)
