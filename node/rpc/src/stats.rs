//! Counters of one dht-rpc node. Remote input that is dropped is counted here by reason
//! (DESIGN.md principle 3), never logged per datagram.

use tern_wire::DecodeError;

/// Why a datagram or request was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than 2 bytes (holepunch probes land here too).
    TooShort,
    /// Source port 0.
    PortZero,
    /// The datagram did not decode.
    Decode(DecodeError),
    /// A response whose tid matched no request.
    UnmatchedResponse,
    /// An internal command missing its target or value (or a PING_NAT naming port 0).
    MalformedInternal,
    /// A DELAYED_PING asking for more than the maximum delay, or too many pending.
    DelayedPingRefused,
    /// The transmit queue was full.
    TxQueueFull,
    /// A request over its source IP's rate limit (`RpcConfig::rate_limit`).
    RateLimited,
}

/// Slots of [`RpcStats::app_commands`]: hyperdht's ten command numbers and "other".
pub const APP_COMMAND_SLOTS: usize = 11;

/// Which counter slot a request's replies go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommandSlot {
    /// `internal_requests` / `internal_replies` index.
    Internal(usize),
    /// `app_commands` / `app_replies` index.
    App(usize),
}

impl CommandSlot {
    /// The slot of a request with this `internal` flag and `command` number.
    pub(crate) fn of(internal: bool, command: u64) -> Self {
        if internal {
            Self::Internal(
                tern_wire::rpc::InternalCommand::from_u64(command).map_or(5, |c| c as usize),
            )
        } else {
            Self::App(
                usize::try_from(command)
                    .map_or(APP_COMMAND_SLOTS - 1, |c| c.min(APP_COMMAND_SLOTS - 1)),
            )
        }
    }
}

/// Counters, monotonic since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcStats {
    /// Requests received, by dht-rpc internal command (index) — 5 known + other.
    pub internal_requests: [u64; 6],
    /// Application-space requests handed to the handler.
    pub app_requests: u64,
    /// The same by command number: hyperdht's 0..=9 (PEER_HANDSHAKE .. IMMUTABLE_GET,
    /// see [`APP_COMMAND_SLOTS`]), index 10 for any other number.
    pub app_commands: [u64; APP_COMMAND_SLOTS],
    /// Replies sent, by the internal command of the request answered (indexed as
    /// `internal_requests`).
    pub internal_replies: [u64; 6],
    /// Replies sent, by the application command of the request answered (indexed as
    /// `app_commands`; a relay's answer to a client on a server's behalf included).
    pub app_replies: [u64; APP_COMMAND_SLOTS],
    /// Replies that carried an error code (any command).
    pub error_replies: u64,
    /// Responses matched to our requests.
    pub responses: u64,
    /// Requests answered with INVALID_TOKEN.
    pub invalid_tokens: u64,
    /// Requests we sent (first transmissions).
    pub requests_sent: u64,
    /// Requests that ran out of retries.
    pub timeouts: u64,
    /// Drops by reason.
    pub too_short: u64,
    /// Source port 0.
    pub port_zero: u64,
    /// Undecodable datagrams (every [`DecodeError`]).
    pub decode_errors: u64,
    /// The part of `decode_errors` whose first byte is no dht-rpc type at all (UDX
    /// packets, other protocols, junk), as opposed to malformed dht-rpc messages.
    pub unknown_type: u64,
    /// Responses matching nothing.
    pub unmatched_responses: u64,
    /// Internal requests without their required fields.
    pub malformed_internal: u64,
    /// Refused DELAYED_PINGs.
    pub delayed_ping_refused: u64,
    /// Datagrams lost to a full transmit queue.
    pub tx_queue_full: u64,
    /// Ids that did not hash from the sender's address (discarded, not fatal).
    pub invalid_ids: u64,
    /// Requests dropped by the per-IP rate limit.
    pub rate_limited: u64,
    /// Replies shortened to the reply budget of an unauthenticated request (closer
    /// nodes or LOOKUP peers left out).
    pub replies_trimmed: u64,
    /// Replies whose value was left out because it alone exceeded the budget.
    pub values_withheld: u64,
    /// Routing-table changes not recorded for replicas because the queue was full
    /// (`table_sync::MAX_TABLE_CHANGES`).
    pub table_changes_dropped: u64,
}

impl RpcStats {
    /// Adds `other`'s counters to these (the shards of one node identity summed).
    pub fn accumulate(&mut self, other: &RpcStats) {
        let sum = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        sum(&mut self.internal_requests, &other.internal_requests);
        sum(&mut self.app_commands, &other.app_commands);
        sum(&mut self.internal_replies, &other.internal_replies);
        sum(&mut self.app_replies, &other.app_replies);
        let Self {
            internal_requests: _,
            app_commands: _,
            internal_replies: _,
            app_replies: _,
            app_requests,
            error_replies,
            responses,
            invalid_tokens,
            requests_sent,
            timeouts,
            too_short,
            port_zero,
            decode_errors,
            unknown_type,
            unmatched_responses,
            malformed_internal,
            delayed_ping_refused,
            tx_queue_full,
            invalid_ids,
            rate_limited,
            replies_trimmed,
            values_withheld,
            table_changes_dropped,
        } = other;
        // Destructured above so that a new counter cannot be forgotten here.
        self.app_requests += app_requests;
        self.error_replies += error_replies;
        self.responses += responses;
        self.invalid_tokens += invalid_tokens;
        self.requests_sent += requests_sent;
        self.timeouts += timeouts;
        self.too_short += too_short;
        self.port_zero += port_zero;
        self.decode_errors += decode_errors;
        self.unknown_type += unknown_type;
        self.unmatched_responses += unmatched_responses;
        self.malformed_internal += malformed_internal;
        self.delayed_ping_refused += delayed_ping_refused;
        self.tx_queue_full += tx_queue_full;
        self.invalid_ids += invalid_ids;
        self.rate_limited += rate_limited;
        self.replies_trimmed += replies_trimmed;
        self.values_withheld += values_withheld;
        self.table_changes_dropped += table_changes_dropped;
    }

    /// Counts a reply to a request of `slot`.
    pub(crate) fn count_reply(&mut self, slot: CommandSlot, error: u64) {
        match slot {
            CommandSlot::Internal(i) => self.internal_replies[i] += 1,
            CommandSlot::App(i) => self.app_replies[i] += 1,
        }
        if error != 0 {
            self.error_replies += 1;
        }
    }

    /// Counts a drop.
    pub fn drop(&mut self, reason: DropReason) {
        if reason == DropReason::Decode(DecodeError::UnknownType) {
            self.unknown_type += 1;
        }
        let c = match reason {
            DropReason::TooShort => &mut self.too_short,
            DropReason::PortZero => &mut self.port_zero,
            DropReason::Decode(_) => &mut self.decode_errors,
            DropReason::UnmatchedResponse => &mut self.unmatched_responses,
            DropReason::MalformedInternal => &mut self.malformed_internal,
            DropReason::DelayedPingRefused => &mut self.delayed_ping_refused,
            DropReason::TxQueueFull => &mut self.tx_queue_full,
            DropReason::RateLimited => &mut self.rate_limited,
        };
        *c += 1;
    }
}
