//! Mutable records from async code: the API's `Pending` values are plain futures, so
//! they work on any executor (this example uses `futures-executor`; tokio works the
//! same way).
//!
//! Start a network first (`cargo run --release -p tern -- testnet`), then:
//! `cargo run -p tern --example mutable_async -- 127.0.0.1:49736`

#![allow(clippy::print_stdout)]

use std::net::SocketAddrV4;

use tern::{Dht, DhtConfig, KeyPair};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap: SocketAddrV4 =
        std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:49736".into()).parse()?;
    futures_executor::block_on(async {
        let dht = Dht::bind(DhtConfig { bootstrap: vec![bootstrap], ..DhtConfig::default() })?;
        dht.ready().await?;
        let key_pair = KeyPair::from_seed(&[7; 32]);
        for seq in 1..=3u64 {
            let value = format!("version {seq}");
            let stored = dht.mutable_put(&key_pair, value.as_bytes(), seq).await?;
            println!("put seq {seq} on {stored} nodes");
        }
        let latest = dht.mutable_get(*key_pair.public_key().as_bytes(), 0, true).await?;
        if let Some(v) = latest {
            println!("latest: seq {} = {}", v.seq, String::from_utf8_lossy(&v.value));
        }
        dht.destroy()?;
        Ok(())
    })
}
