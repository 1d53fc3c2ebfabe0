//! One-shot probe commands: each starts an ephemeral client node, runs one operation
//! against the network, prints one result per line (`--json` for machines) and exits
//! non-zero on failure.

#![allow(clippy::print_stdout)] // printing results is what a probe is for

use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tern::{Dht, KeyPair, NodeConfig, RpcConfig};

use super::{ProbeOpts, hex32};

/// A client node for one probe: ephemeral, random port, ready.
fn client(opts: &ProbeOpts) -> anyhow::Result<Dht> {
    let bootstrap = if opts.bootstrap.is_empty() {
        tern::PUBLIC_BOOTSTRAP.iter().filter_map(|s| s.parse().ok()).collect()
    } else {
        opts.bootstrap.clone()
    };
    let rpc = RpcConfig { bootstrap, ephemeral: Some(true), ..RpcConfig::default() };
    let config = NodeConfig { rpc, random_port: true, ..NodeConfig::default() };
    let dht = Dht::start_with_io(config, opts.io).context("starting the client node")?;
    dht.ready().wait().context("bootstrapping")?;
    Ok(dht)
}

fn emit(opts: &ProbeOpts, text: String, value: serde_json::Value) {
    if opts.json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

pub fn ping(addr: SocketAddrV4, opts: &ProbeOpts) -> anyhow::Result<()> {
    let dht = client(opts)?;
    let start = std::time::Instant::now();
    let ok = dht.ping(addr).wait()?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    emit(
        opts,
        format!("{addr} {} {ms:.1} ms", if ok { "answered" } else { "no answer" }),
        json!({"addr": addr.to_string(), "answered": ok, "ms": ms}),
    );
    let _ = dht.destroy();
    if !ok {
        bail!("{addr} did not answer");
    }
    Ok(())
}

pub fn lookup(topic: &str, opts: &ProbeOpts) -> anyhow::Result<()> {
    let topic = hex32(topic)?;
    let dht = client(opts)?;
    let mut found = 0;
    for reply in dht.lookup(topic) {
        for p in &reply.peers {
            found += 1;
            let relays: Vec<String> = p.relay_addresses.iter().map(ToString::to_string).collect();
            emit(
                opts,
                format!(
                    "{} from {} relays [{}]",
                    hex::encode(p.public_key),
                    reply.from,
                    relays.join(", ")
                ),
                json!({"publicKey": hex::encode(p.public_key), "from": reply.from.to_string(), "relays": relays}),
            );
        }
    }
    let _ = dht.destroy();
    if found == 0 {
        bail!("no peers found");
    }
    Ok(())
}

pub fn announce(topic: &str, seed: &str, seconds: u64, opts: &ProbeOpts) -> anyhow::Result<()> {
    let topic = hex32(topic)?;
    let kp = KeyPair::from_seed(&hex32(seed)?);
    let dht = client(opts)?;
    let stored = dht.announce(topic, &kp, &[]).wait()?;
    let pk = hex::encode(kp.public_key().as_bytes());
    emit(
        opts,
        format!("announced {pk} on {stored} nodes"),
        json!({"publicKey": pk, "stored": stored}),
    );
    if seconds > 0 {
        std::thread::sleep(Duration::from_secs(seconds));
    }
    dht.destroy()?;
    Ok(())
}

pub fn mutable_put(seed: &str, value: &str, seq: u64, opts: &ProbeOpts) -> anyhow::Result<()> {
    let kp = KeyPair::from_seed(&hex32(seed)?);
    let dht = client(opts)?;
    let stored = dht.mutable_put(&kp, value.as_bytes(), seq).wait()?;
    let pk = hex::encode(kp.public_key().as_bytes());
    emit(
        opts,
        format!("stored seq {seq} for {pk} on {stored} nodes"),
        json!({"publicKey": pk, "seq": seq, "stored": stored}),
    );
    let _ = dht.destroy();
    Ok(())
}

pub fn mutable_get(public_key: &str, seq: u64, opts: &ProbeOpts) -> anyhow::Result<()> {
    let pk = hex32(public_key)?;
    let dht = client(opts)?;
    let got = dht.mutable_get(pk, seq, true).wait()?;
    let _ = dht.destroy();
    let Some(v) = got else { bail!("no value found") };
    let text = String::from_utf8_lossy(&v.value).into_owned();
    emit(
        opts,
        format!("seq {} {text}", v.seq),
        json!({"seq": v.seq, "value": hex::encode(&v.value), "from": v.from.to_string()}),
    );
    Ok(())
}

pub fn immutable_put(value: &str, opts: &ProbeOpts) -> anyhow::Result<()> {
    let dht = client(opts)?;
    let hash = dht.immutable_put(value.as_bytes()).wait()?;
    emit(opts, hex::encode(hash), json!({"hash": hex::encode(hash)}));
    let _ = dht.destroy();
    Ok(())
}

pub fn immutable_get(hash: &str, opts: &ProbeOpts) -> anyhow::Result<()> {
    let hash = hex32(hash)?;
    let dht = client(opts)?;
    let got = dht.immutable_get(hash).wait()?;
    let _ = dht.destroy();
    let Some(v) = got else { bail!("no value found") };
    emit(opts, String::from_utf8_lossy(&v).into_owned(), json!({"value": hex::encode(&v)}));
    Ok(())
}
