//! Command-line interface (clap). `run` holds the long-running commands (bootstrap,
//! node, testnet), `probe` the one-shot checks an operator runs by hand, `peer` the
//! encrypted-connection commands (listen, connect).

mod admin;
mod config;
mod lifecycle;
mod peer;
mod probe;
mod run;
mod state;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern::IoMode;

use crate::cli::config::{GlobalFlags, NodeFlags, PeerFlags, Settings};

/// tern: a high-capacity HyperDHT node, wire-compatible with the JavaScript hyperdht.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `tern=debug` [default: info].
    #[arg(long, global = true, env = "TERN_LOG")]
    log: Option<String>,
    /// Driver backend: `auto` (io_uring where the kernel allows it, else epoll with a
    /// warning saying why), `uring` (fail if unavailable) or `epoll` [default: auto].
    #[arg(long, global = true, env = "TERN_IO", value_name = "MODE")]
    io: Option<IoMode>,
    /// Shards per node for `bootstrap`, `node` and the testnet's bootstrap node: one
    /// identity served by N pinned threads on one SO_REUSEPORT port [default: every
    /// core the process may run on].
    #[arg(long, global = true, env = "TERN_CORES", value_name = "N")]
    cores: Option<usize>,
    /// Seconds a clean stop (SIGTERM/SIGINT: unannounce, finish in-flight requests)
    /// may take before the process gives up and exits 1 [default: 10].
    #[arg(long, global = true, env = "TERN_SHUTDOWN_TIMEOUT", value_name = "SECONDS")]
    shutdown_timeout: Option<f64>,
    /// Serve Prometheus /metrics, /healthz and /readyz over HTTP on this address (off
    /// by default; meant for loopback or a management network).
    #[arg(long, global = true, env = "TERN_ADMIN", value_name = "HOST:PORT")]
    admin: Option<SocketAddr>,
    /// Keep routing-table snapshots in this directory (written every minute and at a
    /// clean stop; read at start as extra bootstrap contacts) for `bootstrap` and
    /// `node`. One process per directory.
    #[arg(long, global = true, env = "TERN_STATE_DIR", value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Log format: `text` (human) or `json` (one object per line) [default: text].
    #[arg(long, global = true, env = "TERN_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (tracing-subscriber's json formatter).
    Json,
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// `tern config` actions.
#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the effective configuration of `tern node` as TOML (defaults < file <
    /// environment < flags).
    Print {
        #[command(flatten)]
        flags: NodeFlags,
    },
}

/// Options shared by the probe commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeOpts {
    /// Bootstrap node(s) of the network to probe (default: the public HyperDHT network).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Vec<SocketAddrV4>,
    /// Print one JSON object per result line instead of text.
    #[arg(long)]
    pub json: bool,
    /// The driver backend (the global `--io`, filled in after parsing).
    #[arg(skip)]
    pub io: IoMode,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a bootstrap node: persistent from the start with id H32(host:port).
    Bootstrap {
        /// Public IPv4 address to bind and to be known by (not 0.0.0.0).
        #[arg(long)]
        host: Ipv4Addr,
        /// UDP port.
        #[arg(long, default_value_t = 49737)]
        port: u16,
        /// The other bootstrap nodes of the network, contacted at start so the
        /// bootstrap nodes know each other (as hyperdht's `bootstrapper(port, host,
        /// { bootstrap })`); repeat the flag for each. None by default.
        #[arg(long = "peer", value_name = "HOST:PORT")]
        peers: Vec<SocketAddrV4>,
    },
    /// Run one or more DHT nodes until interrupted. Configuration: defaults < the
    /// `--config` file < `TERN_*` variables < flags (`tern config print` shows it).
    Node {
        #[command(flatten)]
        flags: NodeFlags,
    },
    /// Listen for encrypted connections: print the public key, then pipe one
    /// connection to stdin/stdout (or, with --echo, echo every connection).
    #[command(after_help = LISTEN_HELP)]
    Listen {
        /// 32-byte key-pair seed, hex (the same seed is the same public key); without
        /// it a random seed is made and printed to stderr.
        #[arg(long)]
        seed: Option<String>,
        /// Write every connection's bytes back to it, serving connections until
        /// SIGTERM/SIGINT, instead of piping one connection to stdin/stdout.
        #[arg(long)]
        echo: bool,
        #[command(flatten)]
        flags: PeerFlags,
    },
    /// Connect to a listening public key: stdin is sent (our side ends at EOF) and
    /// what arrives is written to stdout; exits once both directions have ended.
    #[command(after_help = CONNECT_HELP)]
    Connect {
        /// The server's 32-byte public key, hex (the first line `tern listen` prints).
        public_key: String,
        #[command(flatten)]
        flags: PeerFlags,
    },
    /// Configuration of `tern node`.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run an isolated test network on loopback, check it, and keep it up.
    Testnet {
        /// Nodes besides the bootstrap node.
        #[arg(long, default_value_t = 10)]
        nodes: u16,
        /// Loopback host for every node.
        #[arg(long, default_value = "127.0.0.1")]
        host: Ipv4Addr,
        /// The bootstrap node's port; nodes take the following ports.
        #[arg(long, default_value_t = 49736)]
        port: u16,
    },
    /// Ping a node.
    Ping {
        /// The node to ping.
        addr: SocketAddrV4,
        #[command(flatten)]
        opts: ProbeOpts,
    },
    /// List the peers announced under a topic.
    Lookup {
        /// 32-byte topic, hex.
        topic: String,
        #[command(flatten)]
        opts: ProbeOpts,
    },
    /// Announce a key pair under a topic.
    Announce {
        /// 32-byte topic, hex.
        topic: String,
        /// 32-byte key-pair seed, hex.
        #[arg(long)]
        seed: String,
        /// Keep re-announcing for this many seconds before unannouncing and exiting.
        #[arg(long = "for", value_name = "SECONDS", default_value_t = 0)]
        duration: u64,
        #[command(flatten)]
        opts: ProbeOpts,
    },
    /// Store a signed mutable value.
    MutablePut {
        /// 32-byte key-pair seed, hex.
        #[arg(long)]
        seed: String,
        /// The value (UTF-8 text).
        value: String,
        /// Sequence number.
        #[arg(long, default_value_t = 0)]
        seq: u64,
        #[command(flatten)]
        opts: ProbeOpts,
    },
    /// Fetch the latest mutable value of a public key.
    MutableGet {
        /// 32-byte public key, hex.
        public_key: String,
        /// Minimum sequence number.
        #[arg(long, default_value_t = 0)]
        seq: u64,
        #[command(flatten)]
        opts: ProbeOpts,
    },
    /// Store an immutable value; prints its hash.
    ImmutablePut {
        /// The value (UTF-8 text).
        value: String,
        #[command(flatten)]
        opts: ProbeOpts,
    },
    /// Fetch an immutable value by hash.
    ImmutableGet {
        /// 32-byte BLAKE2b-256 hash, hex.
        hash: String,
        #[command(flatten)]
        opts: ProbeOpts,
    },
}

const LISTEN_HELP: &str = "\
The node takes the node flags of `tern node` (file, TERN_* variables, flags). It is
reachable (--firewalled false) and persistent by default, for a public host. Behind a
NAT pass --firewalled true: the node then tests whether it is reachable, and while it
is not, clients reach it by holepunching (both NATs must keep ports stable; tern cannot
punch out of a port-randomising NAT, see README).

The public key (hex) is the first line on stdout; logs go to stderr. Without --echo
the command serves one connection and exits when both directions have ended.

Examples:
  tern testnet --port 49736 &
  tern listen --echo --bootstrap 127.0.0.1:49736 \\
      --seed 1111111111111111111111111111111111111111111111111111111111111111
  echo hello | tern listen --bootstrap 127.0.0.1:49736 > received.txt";

const CONNECT_HELP: &str = "\
The node takes the node flags of `tern node` (file, TERN_* variables, flags), but is
ephemeral and firewalled unless --ephemeral false / --firewalled false are given: a
client need not join routing tables, and when the server is not reachable either the
two holepunch. Exits non-zero with the reason when the connection cannot be made (no
server found, refused by its firewall, holepunch failed).

Example (against `tern listen` above):
  echo hello | tern connect <PUBLIC_KEY_HEX> --bootstrap 127.0.0.1:49736";

impl Command {
    /// The probe options of a probe command.
    fn probe_opts_mut(&mut self) -> Option<&mut ProbeOpts> {
        match self {
            Self::Bootstrap { .. }
            | Self::Node { .. }
            | Self::Testnet { .. }
            | Self::Listen { .. }
            | Self::Connect { .. }
            | Self::Config { .. } => None,
            Self::Ping { opts, .. }
            | Self::Lookup { opts, .. }
            | Self::Announce { opts, .. }
            | Self::MutablePut { opts, .. }
            | Self::MutableGet { opts, .. }
            | Self::ImmutablePut { opts, .. }
            | Self::ImmutableGet { opts, .. } => Some(opts),
        }
    }
}

/// Parses a 32-byte hex argument.
pub fn hex32(s: &str) -> anyhow::Result<[u8; 32]> {
    let v = hex::decode(s.trim()).map_err(|e| anyhow::anyhow!("not hex: {e}"))?;
    v.try_into().map_err(|v: Vec<u8>| anyhow::anyhow!("expected 32 bytes, got {}", v.len()))
}

/// Runs a long-running command with signal handling installed first.
fn run_command(command: Command, settings: &Settings) -> anyhow::Result<()> {
    let run = run::Run {
        signal: lifecycle::StopSignal::install()?,
        shutdown_timeout: settings.shutdown_timeout(),
        admin: settings.admin.listen,
        state: state::StateDir::from_settings(settings),
    };
    let (io, cores) = (settings.io()?, settings.node.cores);
    match command {
        Command::Bootstrap { host, port, peers } => {
            run::bootstrap(host, port, &peers, settings, &run)
        }
        Command::Node { .. } => run::nodes(settings, &run),
        Command::Testnet { nodes, host, port } => run::testnet(nodes, host, port, io, cores, &run),
        Command::Listen { seed, .. } => {
            peer::listen_echo(&peer::key_pair(seed.as_deref())?, settings, &run)
        }
        _ => Ok(()),
    }
}

/// Parses the command line, resolves the configuration and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = GlobalFlags {
        log: cli.log.clone(),
        log_format: cli.log_format.map(|f| f.as_str().to_owned()),
        io: cli.io,
        cores: cli.cores,
        shutdown_timeout: cli.shutdown_timeout,
        admin: cli.admin,
        state_dir: cli.state_dir.clone(),
    };
    // The file and the node flags belong to `tern node` (and `config print`) and the
    // single nodes of `listen` / `connect`; the other commands resolve the global flags
    // over the defaults.
    let node_flags = match &cli.command {
        Command::Node { flags } | Command::Config { action: ConfigAction::Print { flags } } => {
            flags.clone()
        }
        Command::Listen { flags, .. } => flags.clone().into(),
        Command::Connect { flags, .. } => {
            let mut flags = flags.clone();
            // A client stays out of routing tables unless asked otherwise, and assumes a
            // NAT (as hyperdht does): claiming OPEN from behind one would send the server
            // to an address that drops its packets, while UNKNOWN costs nothing when the
            // server is reachable and holepunches when it is not.
            flags.ephemeral.get_or_insert(true);
            flags.firewalled.get_or_insert(true);
            flags.into()
        }
        _ => NodeFlags::default(),
    };
    let settings = match Settings::resolve(&node_flags, &global) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if settings.log.format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let io = cli.io.unwrap_or_default();
    let mut command = cli.command;
    if let Some(opts) = command.probe_opts_mut() {
        opts.io = io;
    }
    let result = match command {
        Command::Bootstrap { .. }
        | Command::Node { .. }
        | Command::Testnet { .. }
        | Command::Listen { echo: true, .. } => run_command(command, &settings),
        Command::Listen { seed, .. } => peer::key_pair(seed.as_deref())
            .and_then(|key_pair| peer::listen_pipe(&key_pair, &settings)),
        Command::Connect { public_key, .. } => peer::connect(&public_key, &settings),
        Command::Config { action: ConfigAction::Print { .. } } => print_config(&settings),
        Command::Ping { addr, opts } => probe::ping(addr, &opts),
        Command::Lookup { topic, opts } => probe::lookup(&topic, &opts),
        Command::Announce { topic, seed, duration, opts } => {
            probe::announce(&topic, &seed, duration, &opts)
        }
        Command::MutablePut { seed, value, seq, opts } => {
            probe::mutable_put(&seed, &value, seq, &opts)
        }
        Command::MutableGet { public_key, seq, opts } => {
            probe::mutable_get(&public_key, seq, &opts)
        }
        Command::ImmutablePut { value, opts } => probe::immutable_put(&value, &opts),
        Command::ImmutableGet { hash, opts } => probe::immutable_get(&hash, &opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tern config print`.
#[allow(clippy::print_stdout)] // the command's output
fn print_config(settings: &Settings) -> anyhow::Result<()> {
    print!("{}", settings.to_toml()?);
    Ok(())
}
