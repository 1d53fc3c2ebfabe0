// A JS reference node for netbench: a hyperdht bootstrapper (persistent, serves every
// command) on 127.0.0.1:PORT. Prints "ready" once listening; exits on SIGTERM/stdin EOF.
'use strict'

const DHT = require('hyperdht')

const port = Number(process.argv[2])
const node = DHT.bootstrapper(port, '127.0.0.1', { host: '127.0.0.1' })
node.ready().then(() => {
  process.stdout.write('ready\n')
})
const stop = () => node.destroy().then(() => process.exit(0), () => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.resume()
