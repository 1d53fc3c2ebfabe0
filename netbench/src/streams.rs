//! The encrypted-connection scenarios (`mode = "connect"` and `mode = "stream"`): for a
//! target, a small loopback network of its own implementation (a testnet process: a
//! bootstrap node plus `nodes` persistent nodes), a server process listening on it, and a
//! client process that measures and prints one JSON line. tern runs `tern testnet`,
//! `tern-loadgen serve` and `tern-loadgen connect|stream`; the JS reference runs the
//! same three roles from `interop/stream-bench.js`. Both speak the same sink protocol
//! and time the same events (see loadgen's `streams` module), so a row of one is
//! comparable with a row of the other.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::plan::{Mode, Scenario, Target, TargetKind};
use crate::target::{self, Tools};

/// How long a testnet or server may take to say it is ready.
const START_LIMIT: Duration = Duration::from_secs(60);

/// One client run of a connect or stream scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamRun {
    /// Scenario name.
    pub scenario: String,
    /// Target name.
    pub target: String,
    /// Repeat index.
    pub repeat: usize,
    /// "connect" or "stream".
    pub op: String,
    /// Connects in flight (connect) or streams at once (stream).
    #[serde(default)]
    pub concurrency: usize,
    /// Connects (or streams) that succeeded.
    pub ok: u64,
    /// Connects (or streams) that failed.
    pub failed: u64,
    /// Connect: time to open of each successful connect, µs.
    #[serde(default)]
    pub open_us: Vec<u64>,
    /// Connect: time to the server's report, µs.
    #[serde(default)]
    pub reply_us: Vec<u64>,
    /// Stream: payload per stream.
    #[serde(default)]
    pub bytes_per_stream: u64,
    /// Stream: aggregate MB/s (10⁶ B/s) over the good streams.
    #[serde(default)]
    pub mb_per_s: f64,
    /// Stream: MB/s of each good stream.
    #[serde(default)]
    pub stream_mb_per_s: Vec<f64>,
    /// Wall seconds of the measured part.
    pub seconds: f64,
    /// CPU seconds of the client process during the measured part (its own report).
    pub client_cpu_s: f64,
    /// CPU seconds of the server process during the client run.
    pub server_cpu_s: f64,
    /// CPU seconds of the testnet process during the client run.
    pub testnet_cpu_s: f64,
}

/// The JSON line both clients print.
#[derive(Debug, Deserialize)]
struct ClientLine {
    op: String,
    ok: u64,
    failed: u64,
    #[serde(default)]
    open_us: Vec<u64>,
    #[serde(default)]
    reply_us: Vec<u64>,
    #[serde(default)]
    bytes_per_stream: u64,
    #[serde(default)]
    mb_per_s: f64,
    #[serde(default)]
    stream_mb_per_s: Vec<f64>,
    seconds: f64,
    cpu_s: f64,
}

/// Lines of a child's stderr kept for error messages.
const STDERR_TAIL: usize = 5;

/// A child process whose stdout lines arrive on a channel; killed when dropped.
pub(crate) struct Proc {
    child: Child,
    lines: Receiver<String>,
    /// The last few stderr lines (why it failed, when it does).
    stderr: Arc<Mutex<VecDeque<String>>>,
    what: String,
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command, what: &str) -> anyhow::Result<Proc> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr_pipe = child.stderr.take().context("no stderr")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let tail = stderr.clone();
        // Drained to the end so a chatty child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut t = tail.lock().unwrap_or_else(PoisonError::into_inner);
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        Ok(Proc { child, lines, stderr, what: what.to_owned() })
    }

    /// The first line containing `needle`, within `limit`.
    pub(crate) fn wait_line(&self, needle: &str, limit: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(_) => {
                    // Give the stderr reader a moment to catch the last words of a crash.
                    std::thread::sleep(Duration::from_millis(100));
                    let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
                    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
                    bail!(
                        "{} printed no {needle:?} line within {limit:?}; stderr: {}",
                        self.what,
                        tail.join(" | ")
                    )
                }
            }
        }
    }

    /// The next stdout line within `limit`: `Ok(None)` on timeout, `Err` once the child
    /// closed its stdout (it exited).
    pub(crate) fn next_line(&self, limit: Duration) -> Result<Option<String>, ()> {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Ok(Some(line)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(()),
        }
    }

    /// Its exit status: waits up to 5 s for it to exit on its own, then kills it.
    pub(crate) fn wait_exit(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        Ok(self.child.wait()?)
    }

    /// The last few stderr lines, joined.
    pub(crate) fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter().map(String::as_str).collect::<Vec<_>>().join(" | ")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A target's network and server, up.
struct Stack {
    testnet: Proc,
    server: Proc,
    bootstrap: String,
    public_key: String,
}

fn js(tools: &Tools, mode: &str, options: &serde_json::Value) -> Command {
    let mut c = Command::new("node");
    c.arg("stream-bench.js").arg(mode).arg(options.to_string());
    c.current_dir(tools.repo.join("interop"));
    c
}

fn with_env(mut c: Command, target: &Target) -> Command {
    c.envs(&target.env);
    c
}

/// Starts the testnet (bootstrap on `port`) and the server of `target`'s implementation.
fn start_stack(target: &Target, nodes: usize, port: u16, tools: &Tools) -> anyhow::Result<Stack> {
    let bootstrap = format!("127.0.0.1:{port}");
    let testnet = match target.kind {
        TargetKind::Tern => {
            let mut c = Command::new(tools.bin("tern"));
            c.args(["--log", "warn", "testnet", "--port", &port.to_string()]);
            c.args(["--nodes", &nodes.to_string()]).args(&target.args);
            let p = Proc::spawn(with_env(c, target), "tern testnet")?;
            p.wait_line("testnet up", START_LIMIT)?;
            p
        }
        TargetKind::Js => {
            let opts = serde_json::json!({ "port": port, "nodes": nodes });
            let p = Proc::spawn(js(tools, "testnet", &opts), "the JS testnet")?;
            p.wait_line("\"ready\"", START_LIMIT)?;
            p
        }
        TargetKind::Echo => bail!("the raw echo has no encrypted connections"),
    };
    let server = match target.kind {
        TargetKind::Tern => {
            let mut c = Command::new(tools.bin("tern-loadgen"));
            c.args(["serve", "--bootstrap", &bootstrap]);
            Proc::spawn(with_env(c, target), "tern-loadgen serve")?
        }
        _ => {
            let seed = "42".repeat(32);
            let opts = serde_json::json!({ "bootstrap": bootstrap, "seed": seed });
            Proc::spawn(js(tools, "serve", &opts), "the JS server")?
        }
    };
    let line = server.wait_line("listening", START_LIMIT)?;
    let v: serde_json::Value = serde_json::from_str(&line).context("server's listening line")?;
    let public_key = v["publicKey"].as_str().context("no publicKey")?.to_owned();
    Ok(Stack { testnet, server, bootstrap, public_key })
}

/// The client command for `scenario` against `stack`, and how long it may run.
fn client(
    scenario: &Scenario,
    target: &Target,
    stack: &Stack,
    tools: &Tools,
) -> anyhow::Result<(Command, Duration)> {
    let (bootstrap, key) = (&stack.bootstrap, &stack.public_key);
    Ok(match (&scenario.mode, target.kind) {
        (Mode::Connect { connects, concurrency, warmup, .. }, kind) => {
            // Each connect has 10 s before it counts as failed; a run of them is bounded
            // by that per connect (they time out one after another at worst).
            let limit = 60.0 + 10.0 * (connects + warmup) as f64 / (*concurrency).max(1) as f64;
            let cmd = if kind == TargetKind::Tern {
                let mut c = Command::new(tools.bin("tern-loadgen"));
                c.args(["--json", "--quiet", "connect", "--bootstrap", bootstrap]);
                c.args(["--public-key", key, "--connects", &connects.to_string()]);
                c.args(["--concurrency", &concurrency.to_string()]);
                c.args(["--warmup", &warmup.to_string(), "--timeout", "10"]);
                with_env(c, target)
            } else {
                let opts = serde_json::json!({ "bootstrap": bootstrap, "publicKey": key,
                    "connects": connects, "concurrency": concurrency, "warmup": warmup,
                    "timeoutMs": 10_000 });
                js(tools, "connect", &opts)
            };
            (cmd, Duration::from_secs_f64(limit.min(3600.0)))
        }
        (Mode::Stream { mib, streams, verify, warmup_mib, .. }, kind) => {
            // Generous (5 MiB/s over all streams still finishes; CI runs debug builds),
            // but short enough that a stalled stream costs a minute or two, not ten.
            let timeout = (60.0 + (mib * (*streams).max(1) as u64) as f64 / 5.0).min(1800.0);
            let cmd = if kind == TargetKind::Tern {
                let mut c = Command::new(tools.bin("tern-loadgen"));
                c.args(["--json", "--quiet", "stream", "--bootstrap", bootstrap]);
                c.args(["--public-key", key, "--mib", &mib.to_string()]);
                c.args(["--streams", &streams.to_string(), "--verify", verify]);
                c.args(["--warmup-mib", &warmup_mib.to_string()]);
                c.args(["--timeout", &timeout.to_string()]);
                with_env(c, target)
            } else {
                let opts = serde_json::json!({ "bootstrap": bootstrap, "publicKey": key,
                    "bytes": mib << 20, "streams": streams, "verify": verify,
                    "warmupBytes": warmup_mib << 20, "timeoutMs": timeout * 1000.0 });
                js(tools, "stream", &opts)
            };
            (cmd, Duration::from_secs_f64(2.0 * timeout + 60.0))
        }
        _ => bail!("{} is not a connect or stream scenario", scenario.name),
    })
}

/// Runs one (scenario, target, repeat): network, server, client; everything stopped
/// before returning.
pub fn measure(
    scenario: &Scenario,
    target: &Target,
    repeat: usize,
    port: u16,
    tools: &Tools,
) -> anyhow::Result<StreamRun> {
    let (nodes, concurrency) = match scenario.mode {
        Mode::Connect { nodes, concurrency, .. } => (nodes, concurrency),
        Mode::Stream { nodes, streams, .. } => (nodes, streams),
        _ => bail!("{} is not a connect or stream scenario", scenario.name),
    };
    let stack = start_stack(target, nodes, port, tools).with_context(|| {
        format!("{}: starting {}'s network and server", scenario.name, target.name)
    })?;
    let (cmd, limit) = client(scenario, target, &stack, tools)?;
    let (server_cpu, testnet_cpu) = (
        target::cpu_seconds(stack.server.pid()).unwrap_or(0.0),
        target::cpu_seconds(stack.testnet.pid()).unwrap_or(0.0),
    );
    let proc = Proc::spawn(cmd, &format!("the {} client", target.name))?;
    let line = proc
        .wait_line("\"op\"", limit)
        .with_context(|| format!("{} against {}", scenario.name, target.name))?;
    let server_cpu_s = target::cpu_seconds(stack.server.pid()).unwrap_or(0.0) - server_cpu;
    let testnet_cpu_s = target::cpu_seconds(stack.testnet.pid()).unwrap_or(0.0) - testnet_cpu;
    drop(proc);
    drop(stack);
    let c: ClientLine = serde_json::from_str(&line)
        .with_context(|| format!("{} client printed an unreadable line: {line}", target.name))?;
    // Not one success means a broken pipeline, not a slow target: stop with the reason.
    anyhow::ensure!(
        c.ok > 0,
        "{} against {}: every {} failed ({} of them)",
        scenario.name,
        target.name,
        c.op,
        c.failed
    );
    Ok(StreamRun {
        scenario: scenario.name.clone(),
        target: target.name.clone(),
        repeat,
        op: c.op,
        concurrency,
        ok: c.ok,
        failed: c.failed,
        open_us: c.open_us,
        reply_us: c.reply_us,
        bytes_per_stream: c.bytes_per_stream,
        mb_per_s: c.mb_per_s,
        stream_mb_per_s: c.stream_mb_per_s,
        seconds: c.seconds,
        client_cpu_s: c.cpu_s,
        server_cpu_s,
        testnet_cpu_s,
    })
}

/// Whether the JS driver is present (so a plan fails early with a clear message).
pub fn check_js(repo: &Path) -> anyhow::Result<()> {
    let dir = repo.join("interop");
    anyhow::ensure!(
        dir.join("stream-bench.js").is_file() && dir.join("node_modules/hyperdht").is_dir(),
        "{}: stream-bench.js or node_modules missing (run `npm ci` there)",
        dir.display()
    );
    Ok(())
}
