//! Prometheus text exposition (format 0.0.4) of every node's counters, read through
//! [`tern::DhtMonitor`] when scraped — nothing is cached, so a scrape sees the
//! counters of that moment. Every series carries `node="ip:port"`; a sharded node's
//! counters are summed over its shards, and per-shard request counts are added, as
//! are what its shards passed between them (forwarded datagrams, table changes).

use std::fmt::Write as _;

use tern::{DhtMonitor, NodeStats, ShardLoad, ShardStats};

use crate::cli::admin::Observed;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// dht-rpc internal command names, by `RpcStats::internal_requests` index.
const INTERNAL_COMMANDS: [&str; 6] =
    ["ping", "ping_nat", "find_node", "down_hint", "delayed_ping", "other_internal"];

/// hyperdht command names, by `RpcStats::app_commands` index (the command number).
const APP_COMMANDS: [&str; tern_rpc::APP_COMMAND_SLOTS] = [
    "peer_handshake",
    "peer_holepunch",
    "find_peer",
    "lookup",
    "announce",
    "unannounce",
    "mutable_put",
    "mutable_get",
    "immutable_put",
    "immutable_get",
    "other_app",
];

/// One metric family: name, type, help, and its samples (labels, value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// (labels, value already formatted).
    samples: Vec<(String, String)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Self { name, kind, help, samples: Vec::new() }
    }

    fn add(&mut self, labels: String, value: u64) {
        self.samples.push((labels, value.to_string()));
    }

    /// A sample in seconds (or any fractional unit).
    fn add_f64(&mut self, labels: String, value: f64) {
        self.samples.push((labels, format!("{value:.6}")));
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", self.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
            }
        }
    }
}

/// The counters of one node, its shards summed.
struct Snapshot {
    node: String,
    total: NodeStats,
    per_shard: Vec<NodeStats>,
    load: Vec<ShardLoad>,
    /// What the shards passed between them (`None` unsharded).
    forwarding: Option<ShardStats>,
    persistent: bool,
}

/// CPU time of one of this process's threads, from the scheduler's own accounting
/// (`/proc/self/task/<tid>/schedstat`, first field: nanoseconds on a CPU). `None`
/// where the file is missing (non-Linux, or a kernel without scheduler statistics).
fn thread_cpu_seconds(tid: i32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

fn snapshot(m: &DhtMonitor) -> Option<Snapshot> {
    let per_shard: Vec<NodeStats> =
        m.shard_stats().into_iter().filter_map(|p| p.wait().ok()).collect();
    let mut total = per_shard.first()?.clone();
    for s in per_shard.iter().skip(1) {
        // Counters and records sum; the replicated table counts once (its largest).
        total.absorb(s);
    }
    let node = m.local_addr().map_or_else(|| "unbound".to_owned(), |a| a.to_string());
    Some(Snapshot {
        node,
        total,
        per_shard,
        load: m.shard_load(),
        forwarding: m.forwarding_stats(),
        persistent: m.is_persistent(),
    })
}

/// Renders every node of `observed` as Prometheus text.
pub fn render(observed: &Observed) -> String {
    let nodes: Vec<Snapshot> = observed.nodes.iter().filter_map(snapshot).collect();
    let mut requests = Family::new(
        "tern_requests_total",
        "counter",
        "Requests received, by command (dht-rpc internal or hyperdht app commands).",
    );
    let mut replies = Family::new(
        "tern_replies_total",
        "counter",
        "Replies sent, by the command of the request answered.",
    );
    let mut error_replies =
        Family::new("tern_error_replies_total", "counter", "Replies carrying an error code.");
    let mut connections = Family::new(
        "tern_connections_total",
        "counter",
        "Encrypted connections established (client and server side).",
    );
    let mut holepunches = Family::new(
        "tern_holepunches_total",
        "counter",
        "Holepunch sessions, by outcome (started, punched, failed, or lan: a client's LAN shortcut to a server behind the same NAT won).",
    );
    let mut probes =
        Family::new("tern_holepunch_probes_total", "counter", "Holepunch probes, by direction.");
    let mut udx_bytes = Family::new(
        "tern_udx_bytes_total",
        "counter",
        "UDX stream payload bytes, by direction (sent counts first transmissions only).",
    );
    let mut udx_retransmits =
        Family::new("tern_udx_retransmits_total", "counter", "UDX packets retransmitted.");
    let mut udx_loss = Family::new(
        "tern_udx_loss_events_total",
        "counter",
        "UDX loss handling, by kind: rto (a retransmission timeout fired: a stall of a second or more), tlp (tail loss probe), recovery (fast recovery entered).",
    );
    let mut udx_flow = Family::new(
        "tern_udx_flow_control_total",
        "counter",
        "UDX flow control, by kind: zero_window_probe (the peer's window was closed), refused (DATA packets we had no room for).",
    );
    let mut udx_unread = Family::new(
        "tern_udx_unread_bytes",
        "gauge",
        "In-order UDX bytes waiting for their readers across live streams, against the engine's max_unread_total (past it, streams beyond min_recv_window get smaller windows).",
    );
    let mut udx_held = Family::new(
        "tern_udx_held_bytes",
        "gauge",
        "Out-of-order UDX bytes held for live streams, against the engine's max_held_total (past it, packets that do not fill a gap are refused).",
    );
    let mut early = Family::new(
        "tern_early_packets_total",
        "counter",
        "UDX packets that beat their connect's handshake reply, kept and delivered.",
    );
    let mut handshakes_refused = Family::new(
        "tern_handshakes_refused_total",
        "counter",
        "Incoming handshakes left unanswered: their client IP reached its limit.",
    );
    let mut connections_refused = Family::new(
        "tern_connections_refused_total",
        "counter",
        "Incoming handshakes left unanswered: the node (max_connections) or their client IP (max_connections_per_ip) had as many connections open as allowed.",
    );
    let mut served = Family::new(
        "tern_connections_served",
        "gauge",
        "Connections accepted by this node's listeners and open now.",
    );
    let mut drops =
        Family::new("tern_drops_total", "counter", "Datagrams or requests dropped, by reason.");
    let mut refused =
        Family::new("tern_store_refused_total", "counter", "Storage requests refused, by reason.");
    let mut responses =
        Family::new("tern_responses_total", "counter", "Responses matched to our requests.");
    let mut sent = Family::new("tern_requests_sent_total", "counter", "Requests sent.");
    let mut timeouts =
        Family::new("tern_request_timeouts_total", "counter", "Requests out of retries.");
    let mut relayed =
        Family::new("tern_relayed_total", "counter", "Handshakes and holepunches relayed.");
    let mut capped = Family::new(
        "tern_replies_capped_total",
        "counter",
        "Replies to unauthenticated requests cut to the reply budget (trimmed: closer nodes \
         or peers left out; withheld: the value left out).",
    );
    let mut table = Family::new("tern_routing_table_nodes", "gauge", "Routing table size.");
    let mut records = Family::new("tern_records", "gauge", "Topic records stored.");
    let mut bytes = Family::new("tern_record_bytes", "gauge", "Bytes of topic records stored.");
    let mut persistent = Family::new("tern_persistent", "gauge", "1 when the node is persistent.");
    let mut shard_requests = Family::new(
        "tern_shard_requests_total",
        "counter",
        "Requests received per shard (internal + app).",
    );
    let mut shard_cpu = Family::new(
        "tern_shard_cpu_seconds_total",
        "counter",
        "CPU time of each shard's driver thread (nodes sharing a thread report the same).",
    );
    let mut shard_queue = Family::new(
        "tern_shard_mailbox_depth",
        "gauge",
        "Messages waiting in each shard thread's mailbox (commands, forwarded datagrams).",
    );
    let mut shard_turns = Family::new(
        "tern_shard_loop_turns_total",
        "counter",
        "Event-loop turns of each shard thread (one wait each): datagrams per turn is \
         its batching.",
    );
    let mut shard_datagrams = Family::new(
        "tern_shard_datagrams_total",
        "counter",
        "Datagrams each shard thread received and sent (all sockets of its endpoints).",
    );
    let mut shard_timers = Family::new(
        "tern_shard_timer_calls_total",
        "counter",
        "Timer deadlines each shard thread served (handle_timeout calls).",
    );
    let mut shard_forwarded = Family::new(
        "tern_shard_forwarded_total",
        "counter",
        "Datagrams a sharded node's shards passed between them (request: to the shard \
         owning its target; response: to the shard that sent the request; dropped: the \
         target shard's mailbox was full).",
    );
    let mut shard_table = Family::new(
        "tern_shard_table_changes_total",
        "counter",
        "Routing-table changes a sharded node's shards passed between them (broadcast: \
         sent, once per receiving shard; applied: changed the receiver's table; dropped: \
         a receiver's mailbox was full).",
    );
    for n in &nodes {
        let l = format!("node=\"{}\"", n.node);
        if let Some(f) = n.forwarding {
            shard_forwarded.add(format!("{l},kind=\"request\""), f.forwarded_requests);
            shard_forwarded.add(format!("{l},kind=\"response\""), f.forwarded_responses);
            shard_forwarded.add(format!("{l},kind=\"dropped\""), f.forward_dropped);
            shard_table.add(format!("{l},kind=\"broadcast\""), f.table_broadcast);
            shard_table.add(format!("{l},kind=\"applied\""), f.table_applied);
            shard_table.add(format!("{l},kind=\"dropped\""), f.table_dropped);
        }
        let (r, s) = (&n.total.rpc, &n.total.store);
        for (name, v) in INTERNAL_COMMANDS.iter().zip(r.internal_requests) {
            requests.add(format!("{l},command=\"{name}\",kind=\"internal\""), v);
        }
        for (name, v) in INTERNAL_COMMANDS.iter().zip(r.internal_replies) {
            replies.add(format!("{l},command=\"{name}\",kind=\"internal\""), v);
        }
        for (name, (req, rep)) in APP_COMMANDS.iter().zip(r.app_commands.iter().zip(r.app_replies))
        {
            requests.add(format!("{l},command=\"{name}\",kind=\"app\""), *req);
            replies.add(format!("{l},command=\"{name}\",kind=\"app\""), rep);
        }
        error_replies.add(l.clone(), r.error_replies);
        let c = &n.total.conn;
        connections.add(l.clone(), c.connections);
        for (outcome, v) in [
            ("started", c.holepunches),
            ("punched", c.holepunched),
            ("failed", c.holepunch_failures),
            ("lan", c.lan_connects),
        ] {
            holepunches.add(format!("{l},outcome=\"{outcome}\""), v);
        }
        probes.add(format!("{l},direction=\"sent\""), c.probes_sent);
        probes.add(format!("{l},direction=\"received\""), c.probes_received);
        handshakes_refused.add(l.clone(), c.handshakes_refused);
        connections_refused.add(l.clone(), c.connections_refused);
        served.add(l.clone(), c.served);
        early.add(l.clone(), c.early_packets);
        let u = &c.udx;
        udx_bytes.add(format!("{l},direction=\"sent\""), u.bytes_sent);
        udx_bytes.add(format!("{l},direction=\"received\""), u.bytes_received);
        udx_retransmits.add(l.clone(), u.retransmits);
        for (kind, v) in
            [("rto", u.rto_timeouts), ("tlp", u.tail_loss_probes), ("recovery", u.fast_recoveries)]
        {
            udx_loss.add(format!("{l},kind=\"{kind}\""), v);
        }
        udx_flow.add(format!("{l},kind=\"zero_window_probe\""), u.zero_window_probes);
        udx_flow.add(format!("{l},kind=\"refused\""), u.packets_refused);
        udx_held.add(l.clone(), u.held_bytes);
        udx_unread.add(l.clone(), u.unread_bytes);
        for (reason, v) in [
            ("too_short", r.too_short),
            ("port_zero", r.port_zero),
            ("decode_error", r.decode_errors),
            ("unknown_type", r.unknown_type),
            ("unmatched_response", r.unmatched_responses),
            ("malformed_internal", r.malformed_internal),
            ("delayed_ping_refused", r.delayed_ping_refused),
            ("tx_queue_full", r.tx_queue_full),
            ("invalid_id", r.invalid_ids),
            ("invalid_token", r.invalid_tokens),
            ("rate_limited", r.rate_limited),
            ("relay_refused", s.relay_refused),
        ] {
            drops.add(format!("{l},reason=\"{reason}\""), v);
        }
        for (reason, v) in [
            ("bad_signature", s.bad_signatures),
            ("malformed", s.malformed),
            ("too_large", s.too_large),
            ("topic_full", s.topic_full),
            ("seq_refused", s.seq_refused),
        ] {
            refused.add(format!("{l},reason=\"{reason}\""), v);
        }
        responses.add(l.clone(), r.responses);
        sent.add(l.clone(), r.requests_sent);
        timeouts.add(l.clone(), r.timeouts);
        relayed.add(l.clone(), s.relayed);
        capped.add(format!("{l},action=\"trimmed\""), r.replies_trimmed);
        capped.add(format!("{l},action=\"withheld\""), r.values_withheld);
        table.add(l.clone(), n.total.table_len as u64);
        records.add(l.clone(), n.total.records as u64);
        bytes.add(l.clone(), n.total.record_bytes as u64);
        persistent.add(l.clone(), u64::from(n.persistent));
        for (i, shard) in n.per_shard.iter().enumerate() {
            let total = shard.rpc.app_requests + shard.rpc.internal_requests.iter().sum::<u64>();
            shard_requests.add(format!("{l},shard=\"{i}\""), total);
        }
        for (i, load) in n.load.iter().enumerate() {
            if let Some(cpu) = load.os_thread.and_then(thread_cpu_seconds) {
                shard_cpu.add_f64(format!("{l},shard=\"{i}\""), cpu);
            }
            shard_queue.add(format!("{l},shard=\"{i}\""), load.mailbox_len as u64);
            let d = &load.driver;
            shard_turns.add(format!("{l},shard=\"{i}\""), d.turns);
            shard_datagrams
                .add(format!("{l},shard=\"{i}\",direction=\"in\""), d.datagrams_received);
            shard_datagrams.add(format!("{l},shard=\"{i}\",direction=\"out\""), d.datagrams_sent);
            shard_timers.add(format!("{l},shard=\"{i}\""), d.timeouts);
        }
    }
    let mut out = String::new();
    let mut backend = Family::new("tern_io_backend", "gauge", "The driver backend in use (1).");
    backend.add(format!("backend=\"{}\"", observed.backend), 1);
    let mut count = Family::new("tern_nodes", "gauge", "Nodes served by this process.");
    count.add(String::new(), nodes.len() as u64);
    for f in [
        &backend,
        &count,
        &requests,
        &replies,
        &error_replies,
        &drops,
        &refused,
        &responses,
        &sent,
        &timeouts,
        &relayed,
        &capped,
        &table,
        &records,
        &bytes,
        &persistent,
        &connections,
        &holepunches,
        &probes,
        &handshakes_refused,
        &connections_refused,
        &served,
        &early,
        &udx_bytes,
        &udx_retransmits,
        &udx_loss,
        &udx_flow,
        &udx_held,
        &udx_unread,
        &shard_requests,
        &shard_cpu,
        &shard_queue,
        &shard_turns,
        &shard_datagrams,
        &shard_timers,
        &shard_forwarded,
        &shard_table,
    ] {
        f.write(&mut out);
    }
    out
}
