// A JS reference endpoint for tern's connection tests: a hyperdht server that echoes,
// or a client that pushes a checksummed pattern through a server's echo.
//
// Usage:
//   node stream.js listen '<json>'   json: { bootstrap: ["127.0.0.1:P"], seed: hex32,
//                                            rejectKey?: hex32, firewalled?: bool,
//                                            behindNat?: bool }
//     prints {"event":"listening","publicKey":hex}, then per connection
//     {"event":"connection","remotePublicKey":hex} and, when it ends,
//     {"event":"closed","bytes":n,"sha256":hex}. Exits when stdin closes.
//   node stream.js connect '<json>'  json: { bootstrap, publicKey: hex32, bytes: n,
//                                            chunk?: n, firewalled?: bool, behindNat?: bool }
//   behindNat: firewalled and ephemeral for good, so the peer says UNKNOWN in handshakes
//   and connections to or from it must holepunch even on loopback. Events then carry
//   hyperdht's punch counters (`punches`).
//     writes `bytes` of a fixed pattern, reads the echo, prints one line
//     {"event":"done","ok":bool,"sent":n,"received":n,"sentSha256":hex,"receivedSha256":hex,
//      "openMs":x,"transferMs":y} (or {"event":"error","error":msg}) and exits.
// Every address used is on 127.0.0.0/8 unless `host` says otherwise (the NAT test binds
// 0.0.0.0 inside its network namespaces).
'use strict'

const DHT = require('hyperdht')
const crypto = require('crypto')

const [mode, json] = process.argv.slice(2)
const opts = JSON.parse(json || '{}')
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const hex = (b) => Buffer.from(b).toString('hex')

function makeDht () {
  const o = { bootstrap: opts.bootstrap || [], host: opts.host || '127.0.0.1', port: [0, 0] }
  // Reachable by default so that connects take the direct path on loopback.
  o.firewalled = opts.firewalled === undefined ? false : opts.firewalled
  if (opts.behindNat) {
    // No quick PING_NAT test either: on loopback it would find the node reachable.
    o.firewalled = true
    o.ephemeral = true
    o.quickFirewall = false
  }
  return new DHT(o)
}

// A deterministic byte pattern (a counter through SHA-256), so both sides can check it.
function pattern (n) {
  const buf = Buffer.alloc(n)
  let off = 0
  let i = 0
  while (off < n) {
    const block = crypto.createHash('sha256').update(String(i++)).digest()
    off += block.copy(buf, off)
  }
  return buf
}

async function listen () {
  const dht = makeDht()
  await dht.ready()
  const keyPair = DHT.keyPair(Buffer.from(opts.seed, 'hex'))
  const reject = opts.rejectKey ? Buffer.from(opts.rejectKey, 'hex') : null
  const server = dht.createServer({
    // Behind a NAT of its own: no LAN addresses for clients on the same loopback.
    shareLocalAddress: !opts.behindNat,
    firewall (remotePublicKey) {
      return reject !== null && reject.equals(remotePublicKey)
    }
  }, (socket) => {
    out({
      event: 'connection',
      remotePublicKey: hex(socket.remotePublicKey),
      punches: dht.stats.punches
    })
    const h = crypto.createHash('sha256')
    let bytes = 0
    socket.on('data', (d) => {
      bytes += d.length
      h.update(d)
      socket.write(d)
    })
    // Unordered messages (UDX MESSAGE datagrams) are echoed too.
    socket.on('message', (m) => socket.send(m))
    socket.on('end', () => socket.end())
    socket.on('error', () => {})
    socket.on('close', () => out({ event: 'closed', bytes, sha256: h.digest('hex') }))
  })
  await server.listen(keyPair)
  out({ event: 'listening', publicKey: hex(keyPair.publicKey) })
  process.stdin.resume()
  process.stdin.on('end', async () => {
    await server.close()
    await dht.destroy()
    process.exit(0)
  })
}

async function connect () {
  const dht = makeDht()
  await dht.ready()
  const total = opts.bytes || 0
  const chunk = opts.chunk || 65536
  const data = pattern(total)
  const sentSha256 = crypto.createHash('sha256').update(data).digest('hex')
  const start = process.hrtime.bigint()
  // Behind a NAT of its own: no LAN shortcut to a server on the same loopback.
  const socket = dht.connect(Buffer.from(opts.publicKey, 'hex'), { localConnection: !opts.behindNat })
  const h = crypto.createHash('sha256')
  let received = 0
  let opened = null
  const finish = async (obj) => {
    out(obj)
    socket.destroy()
    await dht.destroy()
    process.exit(0)
  }
  socket.on('error', (err) => finish({ event: 'error', error: String(err && err.message) }))
  socket.on('open', () => {
    opened = process.hrtime.bigint()
    let off = 0
    const pump = () => {
      while (off < total) {
        const end = Math.min(off + chunk, total)
        const more = socket.write(data.subarray(off, end))
        off = end
        if (!more) return socket.once('drain', pump)
      }
      if (total === 0) socket.end()
    }
    pump()
  })
  socket.on('data', (d) => {
    received += d.length
    h.update(d)
    if (received >= total) socket.end()
  })
  socket.on('end', () => {
    const done = process.hrtime.bigint()
    const receivedSha256 = h.digest('hex')
    finish({
      event: 'done',
      ok: received === total && receivedSha256 === sentSha256,
      sent: total,
      received,
      sentSha256,
      receivedSha256,
      remotePublicKey: hex(socket.remotePublicKey),
      punches: dht.stats.punches,
      openMs: Number(opened - start) / 1e6,
      transferMs: Number(done - opened) / 1e6
    })
  })
}

if (mode === 'listen') listen()
else if (mode === 'connect') connect()
else {
  process.stderr.write('usage: node stream.js listen|connect <json>\n')
  process.exit(2)
}
