//! An echo server over encrypted hyperdht connections: every byte a client sends is
//! written back, each connection on its own thread (blocking API).
//!
//! `cargo run -p tern --example echo_server -- --bootstrap 127.0.0.1:49736 SEED_HEX`
//!
//! SEED_HEX (32 bytes) fixes the key pair, so the public key printed on the first line
//! stays the same across runs. Any hyperdht client can connect: `echo_client`,
//! `tern connect`, or JavaScript's `dht.connect(publicKey)` (see README.md here).

#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::time::Duration;

use tern::{Dht, DhtConfig, KeyPair, SecureStream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (bootstrap, rest) = parse_args()?;
    let [seed] = rest.as_slice() else {
        return Err("usage: echo_server --bootstrap HOST:PORT SEED_HEX".into());
    };
    let seed: [u8; 32] = hex::decode(seed)?.try_into().map_err(|_| "the seed is 32 bytes")?;

    // Clients can only reach a server that is reachable itself (tern has no
    // holepunching yet), so this node says it is not firewalled and joins the DHT.
    let dht = Dht::bind(DhtConfig {
        bootstrap,
        firewalled: false,
        ephemeral: Some(false),
        ..DhtConfig::default()
    })?;
    dht.ready().wait()?;

    // `listen` answers handshakes for the key pair and announces it so clients find
    // it; it resolves once the first announce is done.
    let key_pair = KeyPair::from_seed(&seed);
    let mut server = dht.listen(&key_pair).wait()?;
    println!("{}", hex::encode(server.public_key()));
    std::io::stdout().flush()?;

    // `accept_blocking` returns `None` once the node is closed.
    while let Some(stream) = server.accept_blocking() {
        std::thread::spawn(move || echo(stream));
    }
    Ok(())
}

/// Writes everything back until the client ends its side, then ends ours.
fn echo(stream: SecureStream) {
    let who = hex::encode(stream.remote_public_key());
    // The halves could be used from two threads; one thread is enough for an echo.
    let (mut reader, mut writer) = stream.split();
    let mut buf = vec![0u8; 64 * 1024];
    let mut echoed = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break, // the client ended its side
            Ok(n) => {
                if writer.write_all(&buf[..n]).is_err() {
                    return;
                }
                echoed += n;
            }
            Err(e) => {
                eprintln!("{who}: {e}");
                return;
            }
        }
    }
    // Ending our side lets the client read EOF.
    let _ = writer.close_blocking();
    eprintln!("{who}: echoed {echoed} bytes");
    // close_blocking returns when the END is handed to UDX, not when it is
    // acknowledged; keep the stream a moment so it is not cut short.
    std::thread::sleep(Duration::from_secs(1));
}

/// `--bootstrap HOST:PORT` (repeatable) and the positional arguments.
fn parse_args() -> Result<(Vec<SocketAddrV4>, Vec<String>), Box<dyn std::error::Error>> {
    let mut bootstrap = Vec::new();
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--bootstrap" {
            bootstrap.push(args.next().ok_or("--bootstrap needs HOST:PORT")?.parse()?);
        } else {
            rest.push(arg);
        }
    }
    Ok((bootstrap, rest))
}
