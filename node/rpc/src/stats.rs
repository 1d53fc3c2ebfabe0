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

/// Counters, monotonic since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcStats {
    /// Requests received, by dht-rpc internal command (index) — 5 known + other.
    pub internal_requests: [u64; 6],
    /// Application-space requests handed to the handler.
    pub app_requests: u64,
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
}

impl RpcStats {
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
