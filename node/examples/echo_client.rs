//! Sends a message over an encrypted hyperdht connection and prints what comes back
//! (blocking API) — against `echo_server`, `tern listen --echo`, or a JavaScript
//! hyperdht server that echoes.
//!
//! `cargo run -p tern --example echo_client -- --bootstrap 127.0.0.1:49736 PUBLIC_KEY_HEX hello`

#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::SocketAddrV4;

use tern::{Dht, DhtConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (bootstrap, rest) = parse_args()?;
    let [public_key, message] = rest.as_slice() else {
        return Err("usage: echo_client --bootstrap HOST:PORT PUBLIC_KEY_HEX MESSAGE".into());
    };
    let public_key: [u8; 32] =
        hex::decode(public_key)?.try_into().map_err(|_| "the public key is 32 bytes")?;

    // A client node: it does not need to be reachable when the server is.
    let dht = Dht::bind(DhtConfig { bootstrap, ..DhtConfig::default() })?;
    dht.ready().wait()?;

    // Finds the server's announcement, runs the Noise handshake through a relay and
    // opens the UDX stream; the stream is end-to-end encrypted from here on.
    let stream = dht.connect(public_key).wait()?;
    eprintln!("connected to {}", hex::encode(stream.remote_public_key()));

    // Send on one thread while reading on this one, so a long message cannot fill
    // both directions' buffers and stall.
    let (mut reader, mut writer) = stream.split();
    let message = message.clone().into_bytes();
    let sender = std::thread::spawn(move || -> std::io::Result<_> {
        writer.write_all(&message)?;
        writer.close_blocking()?; // the server reads EOF and ends its side
        Ok(writer)
    });
    let mut echoed = Vec::new();
    reader.read_to_end(&mut echoed)?; // until the server ends its side
    let _writer = sender.join().map_err(|_| "the sending thread panicked")??;
    println!("{}", String::from_utf8_lossy(&echoed));

    // The server ended only after reading all of ours, so nothing is in flight.
    dht.destroy()?;
    Ok(())
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
