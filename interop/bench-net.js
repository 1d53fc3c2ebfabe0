// A loopback network of N hyperdht 6.34.0 nodes in one process, for netbench's network
// scenarios (lookup latency in a large network, issue 6 goal P4): the JS twin of
// `tern testnet --nodes N`.
//
// Usage: node bench-net.js '{"port":P,"nodes":N,"parallel":32}'
//   a bootstrap node on 127.0.0.1:P, then N - 1 persistent (ephemeral: false,
//   firewalled: false) nodes on OS-chosen ports, `parallel` of them bootstrapping at a
//   time (hyperdht's createTestnet starts them one after another, which takes minutes
//   for a thousand nodes). Prints {"event":"ready","bootstrap":"127.0.0.1:P","nodes":N,
//   "seconds":S} once every node is fully bootstrapped; runs until stdin closes.
'use strict'

const DHT = require('hyperdht')

const opts = JSON.parse(process.argv[2] || '{}')
const port = Number(opts.port)
const total = Math.max(2, Number(opts.nodes || 10))
const parallel = Math.max(1, Number(opts.parallel || 32))
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

async function main () {
  const started = Date.now()
  const first = new DHT({ ephemeral: false, firewalled: false, bootstrap: [], port, host: '127.0.0.1' })
  await first.fullyBootstrapped()
  const bootstrap = [{ host: '127.0.0.1', port }]
  const nodes = [first]
  let next = 1
  // `parallel` workers, each starting nodes one after another until N exist.
  const worker = async () => {
    while (next < total) {
      next++
      const node = new DHT({ ephemeral: false, firewalled: false, bootstrap, host: '127.0.0.1' })
      nodes.push(node)
      await node.fullyBootstrapped()
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  out({ event: 'ready', bootstrap: `127.0.0.1:${port}`, nodes: nodes.length, seconds: (Date.now() - started) / 1000 })
  const stop = async () => {
    // Destroying a thousand nodes gracefully takes long; the process is a benchmark
    // fixture with nothing to flush.
    process.exit(0)
  }
  process.stdin.resume()
  process.stdin.on('end', stop)
  process.on('SIGTERM', stop)
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n')
  process.exit(1)
})
