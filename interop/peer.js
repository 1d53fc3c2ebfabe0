// A JS reference peer driven by tern's interop tests over JSON lines.
//
// Usage: node peer.js '<json options>'
//   options: { bootstrap: ["127.0.0.1:P"], nodes: N, bootstrapper: {port, host}?,
//              ephemeral?: bool, firewalled?: bool, quickFirewall?: bool, host: "127.0.0.1" }
// Prints {"event":"ready","nodes":[...]} once every node is ready, then answers one JSON
// line per command read from stdin: {"id":n,"ok":true,"result":...} or {"id":n,"ok":false,"error":"..."}.
// Exits when stdin closes. Every network address used is on 127.0.0.0/8.
'use strict'

const DHT = require('hyperdht')
const readline = require('readline')

const opts = JSON.parse(process.argv[2] || '{}')
const host = opts.host || '127.0.0.1'
const nodes = []
const servers = new Map()

const hex = (b) => (b ? Buffer.from(b).toString('hex') : null)
const unhex = (s) => Buffer.from(s, 'hex')
const addr = (a) => `${a.host}:${a.port}`
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

function status (dht) {
  const a = dht.address()
  return {
    host: a.host,
    port: a.port,
    persistent: !dht.ephemeral,
    firewalled: dht.firewalled,
    id: hex(dht.id),
    table: dht.table ? dht.table.toArray().length : 0
  }
}

async function start () {
  if (opts.bootstrapper) {
    const b = DHT.bootstrapper(opts.bootstrapper.port, opts.bootstrapper.host || host, { host })
    await b.ready()
    nodes.push(b)
  }
  for (let i = 0; i < (opts.nodes || 0); i++) {
    const o = { bootstrap: opts.bootstrap || [], host }
    if (opts.ephemeral !== undefined) o.ephemeral = opts.ephemeral
    if (opts.firewalled !== undefined) o.firewalled = opts.firewalled
    if (opts.quickFirewall !== undefined) o.quickFirewall = opts.quickFirewall
    // Explicit ports if given, else kernel-chosen ones (never the public default 49737).
    o.port = opts.ports ? opts.ports[i] : [0, 0]
    const dht = new DHT(o)
    await dht.ready()
    nodes.push(dht)
  }
  out({ event: 'ready', nodes: nodes.map(status) })
}

async function collect (stream) {
  const replies = []
  for await (const r of stream) replies.push(r)
  return replies
}

const commands = {
  status: async () => nodes.map(status),
  async lookup ({ node = 0, topic }) {
    const replies = await collect(nodes[node].lookup(unhex(topic)))
    const peers = new Map()
    for (const r of replies) {
      for (const p of r.peers) peers.set(hex(p.publicKey), p.relayAddresses.map(addr))
    }
    return { replies: replies.length, peers: [...peers].map(([publicKey, relays]) => ({ publicKey, relays })) }
  },
  async announce ({ node = 0, topic, seed, relays = [] }) {
    const kp = DHT.keyPair(unhex(seed))
    const relayAddresses = relays.map((s) => { const [h, p] = s.split(':'); return { host: h, port: Number(p) } })
    const q = nodes[node].announce(unhex(topic), kp, relayAddresses)
    await q.finished()
    return { closest: q.closestReplies.length }
  },
  async unannounce ({ node = 0, topic, seed }) {
    await nodes[node].unannounce(unhex(topic), DHT.keyPair(unhex(seed)))
    return {}
  },
  async mutablePut ({ node = 0, seed, value, seq }) {
    const r = await nodes[node].mutablePut(DHT.keyPair(unhex(seed)), unhex(value), { seq })
    return { publicKey: hex(r.publicKey), seq: r.seq, closest: r.closestNodes.length }
  },
  async mutableGet ({ node = 0, publicKey, seq = 0, latest = true }) {
    const r = await nodes[node].mutableGet(unhex(publicKey), { seq, latest })
    return r && { seq: r.seq, value: hex(r.value), from: addr(r.from) }
  },
  async immutablePut ({ node = 0, value }) {
    const r = await nodes[node].immutablePut(unhex(value))
    return { hash: hex(r.hash), closest: r.closestNodes.length }
  },
  async immutableGet ({ node = 0, hash }) {
    const r = await nodes[node].immutableGet(unhex(hash))
    return r && { value: hex(r.value), from: addr(r.from) }
  },
  async findNode ({ node = 0, target }) {
    const replies = await collect(nodes[node].findNode(unhex(target)))
    return replies.map((r) => ({ from: addr(r.from), id: hex(r.from.id), closerNodes: (r.closerNodes || []).map(addr) }))
  },
  async request ({ node = 0, to, command, target, value, token }) {
    const [h, p] = to.split(':')
    const r = await nodes[node].request({
      command,
      target: target ? unhex(target) : null,
      value: value ? unhex(value) : null,
      token: token ? unhex(token) : null
    }, { host: h, port: Number(p) }, { retry: false })
    return { error: r.error, token: hex(r.token), value: hex(r.value), id: hex(r.from.id), closerNodes: (r.closerNodes || []).map(addr) }
  },
  async listen ({ node = 0, seed }) {
    const server = nodes[node].createServer((socket) => {
      socket.on('data', (d) => socket.write(d)) // echo
      socket.on('end', () => socket.end())
      socket.on('error', () => {})
    })
    await server.listen(DHT.keyPair(unhex(seed)))
    servers.set(seed, server)
    return { publicKey: hex(server.publicKey) }
  },
  async connect ({ node = 0, publicKey, message }) {
    const socket = nodes[node].connect(unhex(publicKey), { localConnection: false, fastOpen: false })
    const data = unhex(message)
    return await new Promise((resolve, reject) => {
      const chunks = []
      let got = 0
      const timer = setTimeout(() => reject(new Error('connect/echo timed out')), 20000)
      socket.on('error', (e) => { clearTimeout(timer); reject(e) })
      socket.on('open', () => socket.write(data))
      socket.on('data', (d) => {
        chunks.push(d)
        got += d.length
        if (got >= data.length) {
          clearTimeout(timer)
          const echoed = Buffer.concat(chunks)
          socket.destroy()
          resolve({ echoed: hex(echoed), remotePublicKey: hex(socket.remotePublicKey) })
        }
      })
    })
  }
}

start().then(() => {
  const rl = readline.createInterface({ input: process.stdin })
  rl.on('line', async (line) => {
    let msg
    try { msg = JSON.parse(line) } catch { return }
    try {
      const result = await commands[msg.op](msg)
      out({ id: msg.id, ok: true, result: result === undefined ? null : result })
    } catch (err) {
      out({ id: msg.id, ok: false, error: String(err && err.message ? err.message : err) })
    }
  })
  rl.on('close', async () => {
    for (const s of servers.values()) await s.close().catch(() => {})
    for (const n of nodes) await n.destroy().catch(() => {})
    process.exit(0)
  })
}, (err) => {
  out({ event: 'error', error: String(err && err.stack ? err.stack : err) })
  process.exit(1)
})
