//! `tern-loadgen serve`: a tern node that listens as one key pair and runs the sink
//! protocol (see the parent module) on every connection, one application thread per
//! connection (the secret-stream decryption runs there, as in any blocking tern app).

use std::io::{BufRead, Write};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use anyhow::Context;
use tern::{Dht, KeyPair, SecureStream, Server};

use super::{HEADER_CRC32, Report, parse_key, start_node};

/// Arguments of `tern-loadgen serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Bootstrap node of the network to listen on.
    #[arg(long)]
    pub bootstrap: SocketAddrV4,
    /// Seed of the server's key pair, 64 hex digits (default: 32 bytes of 0x42).
    #[arg(long)]
    pub seed: Option<String>,
    /// Connections served at once; more are reset (bounds the threads).
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
}

/// The default server seed (clients find the key in the `listening` line anyway).
const DEFAULT_SEED: [u8; 32] = [0x42; 32];

/// Listens on `dht` as the key pair of `seed` and serves the sink protocol on a
/// background thread; returns the public key.
pub fn listen(
    dht: &Dht,
    seed: [u8; 32],
    max_connections: usize,
) -> anyhow::Result<([u8; 32], JoinHandle<()>)> {
    let key_pair = KeyPair::from_seed(&seed);
    let server = dht.listen(&key_pair).wait().context("listening")?;
    let public_key = server.public_key();
    let acceptor = std::thread::Builder::new()
        .name("sink-accept".into())
        .spawn(move || accept_loop(server, max_connections))
        .context("spawning the accept thread")?;
    Ok((public_key, acceptor))
}

/// Accepts until the server or node closes; each connection gets a thread while fewer
/// than `max` are live.
fn accept_loop(mut server: Server, max: usize) {
    let live = Arc::new(AtomicUsize::new(0));
    while let Some(mut stream) = server.accept_blocking() {
        if live.load(Ordering::Acquire) >= max {
            stream.destroy();
            continue;
        }
        live.fetch_add(1, Ordering::AcqRel);
        let mine = live.clone();
        let spawned = std::thread::Builder::new().name("sink".into()).spawn(move || {
            if let Err(e) = sink(stream) {
                tracing::debug!(error = %e, "sink connection failed");
            }
            mine.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            // The stream moved into the failed closure and was dropped (ended) with it.
            live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One connection: read the header and the payload to EOF, answer with the report. The
/// payload is read in place (`BufRead`: no copy out of the decryption buffer), as an
/// application that parses or hashes what it receives would.
fn sink(mut stream: SecureStream) -> std::io::Result<Report> {
    let mut header = None;
    let mut bytes = 0u64;
    let mut crc = crc32fast::Hasher::new();
    loop {
        let buf = stream.fill_buf()?;
        let n = buf.len();
        if n == 0 {
            break;
        }
        let mut data = buf;
        if header.is_none() {
            header = Some(data[0]);
            data = &data[1..];
        }
        bytes += data.len() as u64;
        if header == Some(HEADER_CRC32) {
            crc.update(data);
        }
        stream.consume(n);
    }
    let crc = if header == Some(HEADER_CRC32) { crc.finalize() } else { 0 };
    let report = Report { bytes, crc };
    stream.write_all(&report.encode())?;
    stream.close_blocking()?;
    Ok(report)
}

/// `tern-loadgen serve`: prints `{"event":"listening","publicKey":HEX}` and serves until
/// stdin closes.
#[allow(clippy::print_stdout)] // the listening line is the program's output
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let seed = match &args.seed {
        Some(s) => parse_key(s).context("--seed")?,
        None => DEFAULT_SEED,
    };
    let dht = start_node(args.bootstrap)?;
    let (public_key, _acceptor) = listen(&dht, seed, args.max_connections)?;
    println!(
        "{}",
        serde_json::json!({ "event": "listening", "publicKey": hex::encode(public_key) })
    );
    // Serve until whoever started us closes our stdin (netbench does; so does Ctrl-D).
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    dht.destroy().context("stopping the node")?;
    Ok(())
}
