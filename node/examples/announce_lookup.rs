//! Announce a key pair under a topic, then look the topic up — the hyperdht
//! `announce` / `lookup` pair from Rust.
//!
//! Start a network first (`cargo run --release -p tern -- testnet`), then:
//! `cargo run -p tern --example announce_lookup -- 127.0.0.1:49736`

#![allow(clippy::print_stdout)]

use std::net::SocketAddrV4;

use tern::{Dht, DhtConfig, KeyPair};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap: SocketAddrV4 =
        std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:49736".into()).parse()?;
    let dht = Dht::bind(DhtConfig { bootstrap: vec![bootstrap], ..DhtConfig::default() })?;
    dht.ready().wait()?;

    let key_pair = KeyPair::from_seed(&[42; 32]);
    let topic = tern_crypto::hash32(b"an example topic");
    let stored = dht.announce(topic, &key_pair, &[]).wait()?;
    println!("announced {} on {stored} nodes", hex::encode(key_pair.public_key().as_bytes()));

    // Replies stream in as nodes answer; iterating blocks until the query ends.
    for reply in dht.lookup(topic) {
        for peer in reply.peers {
            println!("{} says: {} is here", reply.from, hex::encode(peer.public_key));
        }
    }
    // destroy() unannounces before closing.
    dht.destroy()?;
    Ok(())
}
