//! `tern listen` and `tern connect`: encrypted hyperdht connections from the shell, as
//! in hyperdht's own example — stdin is piped into the connection and the connection
//! to stdout — plus an echo server for trying a network end to end.
//!
//! Each command runs one node built from the same flags, environment and file as
//! `tern node` (see `config`), then listens or connects through it.

#![allow(clippy::print_stdout)] // the listener's public key is the command's output

use std::io::{self, Read, Write};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use tern::{Dht, KeyPair, ReadHalf, SecureStream, WriteHalf};

use crate::cli::config::Settings;
use crate::cli::hex32;
use crate::cli::run::Run;
use crate::cli::state::StateDir;

/// Bytes moved per read in either direction (a secret-stream frame holds at most 64 KiB).
const CHUNK: usize = 64 * 1024;

/// How long a finished connection's node keeps running before it is destroyed. The
/// API has no "fully closed" signal yet: `close_blocking` returns once our END is
/// handed to UDX, not once it (and the bytes before it) are acknowledged, and
/// destroying the node at that point could lose that tail.
const LINGER: Duration = Duration::from_secs(1);

/// The key pair of `--seed` (32 bytes, hex), or a random one whose seed is printed to
/// stderr so the same public key can be served again.
pub fn key_pair(seed: Option<&str>) -> anyhow::Result<KeyPair> {
    let seed = match seed {
        Some(hex) => hex32(hex).context("--seed")?,
        None => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("random seed: {e}"))?;
            eprintln!("seed {} (pass it as --seed to keep this key)", hex::encode(seed));
            seed
        }
    };
    Ok(KeyPair::from_seed(&seed))
}

/// Starts the command's node and waits until it has bootstrapped; with `--state-dir`,
/// through the snapshot of its last run too.
fn start_node(settings: &Settings) -> anyhow::Result<Dht> {
    let mut config = settings.node_config(0);
    if let Some(state) = StateDir::from_settings(settings) {
        state.prepare()?;
        state.load_into(0, &mut config.rpc);
    }
    // Without --port a one-shot peer takes any free port, leaving hyperdht's default
    // ports to long-running nodes on the same host.
    config.random_port = settings.node.port == 0;
    let dht = Dht::start_with_io(config, settings.io()?).context("starting the node")?;
    dht.ready().wait().context("bootstrapping")?;
    Ok(dht)
}

/// Listens on `key_pair` and prints its public key as the first stdout line (scripts
/// read it from there).
fn start_server(key_pair: &KeyPair, settings: &Settings) -> anyhow::Result<(Dht, tern::Server)> {
    let dht = start_node(settings)?;
    let server = dht.listen(key_pair).wait().context("listening (announcing the key)")?;
    let public_key = hex::encode(server.public_key());
    println!("{public_key}");
    io::stdout().flush().context("writing the public key to stdout")?;
    tracing::info!(public_key, addr = ?dht.local_addr(), "listening");
    Ok((dht, server))
}

/// `tern listen --echo`: writes every connection's bytes back, each connection on its
/// own thread, until SIGTERM/SIGINT (then unannounces and stops like `tern node`).
pub fn listen_echo(key_pair: &KeyPair, settings: &Settings, run: &Run) -> anyhow::Result<()> {
    let (dht, mut server) = start_server(key_pair, settings)?;
    thread::Builder::new()
        .name("tern-accept".into())
        .spawn(move || {
            // Ends when the node is destroyed at shutdown.
            while let Some(stream) = server.accept_blocking() {
                let remote = hex::encode(stream.remote_public_key());
                tracing::info!(remote, "connection");
                let spawned =
                    thread::Builder::new().name("tern-echo".into()).spawn(move || echo(stream));
                if let Err(e) = spawned {
                    tracing::warn!(remote, error = %e, "no thread for the connection; dropped");
                }
            }
        })
        .context("starting the accept thread")?;
    run.serve(vec![dht], None)
}

/// Echoes one connection until the peer ends its side, then ends ours.
fn echo(stream: SecureStream) {
    let remote = hex::encode(stream.remote_public_key());
    let (mut rd, mut wr) = stream.split();
    let mut buf = vec![0u8; CHUNK];
    let mut echoed = 0u64;
    let result = loop {
        match rd.read(&mut buf) {
            Ok(0) => break wr.close_blocking(),
            Ok(n) => {
                if let Err(e) = wr.write_all(&buf[..n]) {
                    break Err(e);
                }
                echoed += n as u64;
            }
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok(()) => tracing::info!(remote, echoed, "connection ended"),
        Err(e) => tracing::warn!(remote, echoed, error = %e, "connection failed"),
    }
    // Keep the handles while our END is acknowledged (see LINGER).
    thread::sleep(LINGER);
}

/// `tern listen` without `--echo`: accepts one connection and pipes stdin into it and
/// it to stdout; returns once both directions have ended.
pub fn listen_pipe(key_pair: &KeyPair, settings: &Settings) -> anyhow::Result<()> {
    let (dht, mut server) = start_server(key_pair, settings)?;
    let Some(stream) = server.accept_blocking() else {
        bail!("the node closed before a connection arrived");
    };
    tracing::info!(remote = hex::encode(stream.remote_public_key()), "connection");
    let result = pipe(stream);
    finish(dht, Some(server), settings);
    result
}

/// `tern connect`: connects to `public_key` and pipes stdin into the connection and
/// the connection to stdout; returns once both directions have ended.
pub fn connect(public_key: &str, settings: &Settings) -> anyhow::Result<()> {
    let target = hex32(public_key).context("PUBLIC_KEY")?;
    let dht = start_node(settings)?;
    let stream = match dht.connect(target).wait() {
        Ok(stream) => stream,
        Err(e) => {
            let _ = dht.destroy();
            return Err(e).with_context(|| format!("connecting to {public_key}"));
        }
    };
    tracing::info!(remote = public_key, "connected");
    let result = pipe(stream);
    finish(dht, None, settings);
    result
}

/// Lets the last bytes be acknowledged, keeps the routing table (`--state-dir`), then
/// unannounces and stops the node.
fn finish(dht: Dht, server: Option<tern::Server>, settings: &Settings) {
    thread::sleep(LINGER);
    if let Some(state) = StateDir::from_settings(settings) {
        state.save(std::slice::from_ref(&dht));
    }
    if let Some(server) = server {
        let _ = server.close();
    }
    if let Err(e) = dht.destroy() {
        tracing::warn!(error = %e, "stopping the node");
    }
}

/// stdin → stream on a thread (ending our side at stdin's EOF), stream → stdout here.
/// Done when both have ended; a failure of the receiving direction returns at once
/// (the sending thread may be blocked reading stdin, and the process is about to exit).
fn pipe(stream: SecureStream) -> anyhow::Result<()> {
    let (rd, wr) = stream.split();
    let sending = thread::Builder::new()
        .name("tern-stdin".into())
        .spawn(move || stdin_to(wr))
        .context("starting the stdin thread")?;
    let received = stream_to_stdout(rd).context("receiving")?;
    let sent = match sending.join() {
        Ok(r) => r.context("sending")?,
        Err(_) => bail!("the stdin thread panicked"),
    };
    tracing::info!(sent, received, "connection ended");
    Ok(())
}

/// Copies stdin into the stream, then ends our side (the peer reads EOF).
fn stdin_to(mut wr: WriteHalf) -> io::Result<u64> {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        wr.write_all(&buf[..n])?;
        sent += n as u64;
    }
    wr.close_blocking()?;
    Ok(sent)
}

/// Copies the stream to stdout until the peer ends its side, flushing each chunk so
/// interactive use sees bytes as they arrive.
fn stream_to_stdout(mut rd: ReadHalf) -> io::Result<u64> {
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        let n = rd.read(&mut buf)?;
        if n == 0 {
            return Ok(received);
        }
        stdout.write_all(&buf[..n])?;
        stdout.flush()?;
        received += n as u64;
    }
}
