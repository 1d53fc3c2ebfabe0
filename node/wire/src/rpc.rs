//! dht-rpc datagrams: requests and responses (spec §3).
//!
//! Byte 0 is `(type << 4) | version` with version 3: `0x03` is a request, `0x13` a
//! response. A flags field then says which optional fields follow. The decoder reads
//! flags as a `uint` and ignores unknown bits and trailing bytes, as dht-rpc does; the
//! encoder derives the flags from which fields are present, so a message can never
//! carry a flag without its field.

use std::net::SocketAddrV4;

use crate::cursor::{Decode, Encode, IPV4_ADDR_LEN, Reader, Writer, buffer_len, uint_len};
use crate::error::DecodeError;
use crate::list::AddrList;

/// Byte 0 of a request.
pub const REQUEST_TYPE: u8 = 0x03;
/// Byte 0 of a response.
pub const RESPONSE_TYPE: u8 = 0x13;

/// Request/response flag bit: a 32-byte node id follows.
pub const FLAG_ID: u64 = 0x01;
/// Flag bit: a 32-byte round-trip token follows.
pub const FLAG_TOKEN: u64 = 0x02;
/// Request flag bit: the command is in dht-rpc's internal space.
pub const FLAG_INTERNAL: u64 = 0x04;
/// Response flag bit: an array of closer nodes follows.
pub const FLAG_CLOSER_NODES: u64 = 0x04;
/// Request flag bit: a 32-byte target follows.
pub const FLAG_TARGET: u64 = 0x08;
/// Response flag bit: a non-zero error code follows.
pub const FLAG_ERROR: u64 = 0x08;
/// Flag bit: a length-prefixed value follows.
pub const FLAG_VALUE: u64 = 0x10;

/// dht-rpc's internal commands (request flag [`FLAG_INTERNAL`] set), spec §3.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum InternalCommand {
    /// Liveness check; answered empty.
    Ping = 0,
    /// Reachability test: answered to the requester's host at the port in the value.
    PingNat = 1,
    /// Closest nodes to the target.
    FindNode = 2,
    /// A hint that the node at the address in the value is down.
    DownHint = 3,
    /// A ping answered after the delay in the value.
    DelayedPing = 4,
}

impl InternalCommand {
    /// The internal command with this number, if dht-rpc defines one.
    pub const fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            0 => Self::Ping,
            1 => Self::PingNat,
            2 => Self::FindNode,
            3 => Self::DownHint,
            4 => Self::DelayedPing,
            _ => return None,
        })
    }
}

/// Error codes carried in a response's `error` field (spec §3.9).
pub mod error_code {
    /// No error.
    pub const OK: u64 = 0;
    /// The responder does not serve this command (or is still ephemeral).
    pub const UNKNOWN_COMMAND: u64 = 1;
    /// The request's token did not verify; the response carries a fresh one.
    pub const INVALID_TOKEN: u64 = 2;
    /// hyperdht MUTABLE_PUT: same seq, different value.
    pub const SEQ_REUSED: u64 = 16;
    /// hyperdht MUTABLE_PUT: seq lower than the stored one.
    pub const SEQ_TOO_LOW: u64 = 17;
}

/// A dht-rpc request. Borrowed fields point into the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Transaction id, echoed by the response.
    pub tid: u16,
    /// The destination address the sender used: tells the receiver how it is seen.
    pub to: SocketAddrV4,
    /// The sender's node id; present only from persistent nodes on their server socket.
    pub id: Option<&'a [u8; 32]>,
    /// A token the receiver issued earlier to the sender's host.
    pub token: Option<&'a [u8; 32]>,
    /// Whether `command` is in dht-rpc's internal space.
    pub internal: bool,
    /// The command number.
    pub command: u64,
    /// The key the command is about.
    pub target: Option<&'a [u8; 32]>,
    /// Command-specific payload.
    pub value: Option<&'a [u8]>,
}

/// A dht-rpc response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The transaction id of the request this answers.
    pub tid: u16,
    /// The requester's address as the responder observed it.
    pub to: SocketAddrV4,
    /// The responder's node id (persistent, server socket only).
    pub id: Option<&'a [u8; 32]>,
    /// A round-trip token for the requester's host.
    pub token: Option<&'a [u8; 32]>,
    /// Nodes closer to the request's target; empty means the field is absent.
    pub closer_nodes: AddrList<'a>,
    /// Error code, [`error_code::OK`] when the field is absent.
    pub error: u64,
    /// Command-specific payload.
    pub value: Option<&'a [u8]>,
}

/// Either kind of dht-rpc datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A request (`0x03`).
    Request(Request<'a>),
    /// A response (`0x13`).
    Response(Response<'a>),
}

impl<'a> Request<'a> {
    /// The request's flags byte, derived from its fields.
    pub fn flags(&self) -> u64 {
        flag(self.id.is_some(), FLAG_ID)
            | flag(self.token.is_some(), FLAG_TOKEN)
            | flag(self.internal, FLAG_INTERNAL)
            | flag(self.target.is_some(), FLAG_TARGET)
            | flag(self.value.is_some(), FLAG_VALUE)
    }

    /// The internal command, when this is an internal request dht-rpc knows.
    pub fn internal_command(&self) -> Option<InternalCommand> {
        if self.internal { InternalCommand::from_u64(self.command) } else { None }
    }

    /// Reads the body after the type byte.
    fn decode_body(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        let tid = r.u16()?;
        let to = r.ipv4()?;
        let id = opt_array(r, flags & FLAG_ID != 0)?;
        let token = opt_array(r, flags & FLAG_TOKEN != 0)?;
        let command = r.uint()?;
        let target = opt_array(r, flags & FLAG_TARGET != 0)?;
        let value = if flags & FLAG_VALUE != 0 { Some(r.buffer()?) } else { None };
        Ok(Self {
            tid,
            to,
            id,
            token,
            internal: flags & FLAG_INTERNAL != 0,
            command,
            target,
            value,
        })
    }
}

impl<'a> Response<'a> {
    /// The response's flags byte, derived from its fields.
    pub fn flags(&self) -> u64 {
        flag(self.id.is_some(), FLAG_ID)
            | flag(self.token.is_some(), FLAG_TOKEN)
            | flag(!self.closer_nodes.is_empty(), FLAG_CLOSER_NODES)
            | flag(self.error != 0, FLAG_ERROR)
            | flag(self.value.is_some(), FLAG_VALUE)
    }

    fn decode_body(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let flags = r.uint()?;
        let tid = r.u16()?;
        let to = r.ipv4()?;
        let id = opt_array(r, flags & FLAG_ID != 0)?;
        let token = opt_array(r, flags & FLAG_TOKEN != 0)?;
        let closer_nodes = if flags & FLAG_CLOSER_NODES != 0 {
            AddrList::decode_from(r)?
        } else {
            AddrList::EMPTY
        };
        let error = if flags & FLAG_ERROR != 0 { r.uint()? } else { 0 };
        let value = if flags & FLAG_VALUE != 0 { Some(r.buffer()?) } else { None };
        Ok(Self { tid, to, id, token, closer_nodes, error, value })
    }
}

impl<'a> Message<'a> {
    /// The transaction id of either kind.
    pub fn tid(&self) -> u16 {
        match self {
            Message::Request(q) => q.tid,
            Message::Response(r) => r.tid,
        }
    }
}

const fn flag(set: bool, bit: u64) -> u64 {
    if set { bit } else { 0 }
}

fn opt_array<'a, const N: usize>(
    r: &mut Reader<'a>,
    present: bool,
) -> Result<Option<&'a [u8; N]>, DecodeError> {
    if present { r.array().map(Some) } else { Ok(None) }
}

fn opt_len<T>(v: Option<T>, len: usize) -> usize {
    if v.is_some() { len } else { 0 }
}

impl Encode for Request<'_> {
    fn encoded_len(&self) -> usize {
        2 + 2
            + IPV4_ADDR_LEN
            + opt_len(self.id, 32)
            + opt_len(self.token, 32)
            + uint_len(self.command)
            + opt_len(self.target, 32)
            + self.value.map_or(0, |v| buffer_len(v.len()))
    }

    fn encode_to(&self, w: &mut Writer<'_>) {
        w.u8(REQUEST_TYPE);
        // The flags always fit one byte, which is also their uint form.
        w.uint(self.flags());
        w.u16(self.tid);
        w.ipv4(&self.to);
        self.id.inspect(|id| w.bytes(&id[..]));
        self.token.inspect(|t| w.bytes(&t[..]));
        w.uint(self.command);
        self.target.inspect(|t| w.bytes(&t[..]));
        self.value.inspect(|v| w.buffer(v));
    }
}

impl Encode for Response<'_> {
    fn encoded_len(&self) -> usize {
        2 + 2
            + IPV4_ADDR_LEN
            + opt_len(self.id, 32)
            + opt_len(self.token, 32)
            + if self.closer_nodes.is_empty() { 0 } else { self.closer_nodes.encoded_len() }
            + if self.error != 0 { uint_len(self.error) } else { 0 }
            + self.value.map_or(0, |v| buffer_len(v.len()))
    }

    fn encode_to(&self, w: &mut Writer<'_>) {
        w.u8(RESPONSE_TYPE);
        w.uint(self.flags());
        w.u16(self.tid);
        w.ipv4(&self.to);
        self.id.inspect(|id| w.bytes(&id[..]));
        self.token.inspect(|t| w.bytes(&t[..]));
        if !self.closer_nodes.is_empty() {
            self.closer_nodes.encode_to(w);
        }
        if self.error != 0 {
            w.uint(self.error);
        }
        self.value.inspect(|v| w.buffer(v));
    }
}

impl Encode for Message<'_> {
    fn encoded_len(&self) -> usize {
        match self {
            Message::Request(q) => q.encoded_len(),
            Message::Response(r) => r.encoded_len(),
        }
    }
    fn encode_to(&self, w: &mut Writer<'_>) {
        match self {
            Message::Request(q) => q.encode_to(w),
            Message::Response(r) => r.encode_to(w),
        }
    }
}

impl<'a> Decode<'a> for Message<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        match r.u8()? {
            REQUEST_TYPE => Request::decode_body(r).map(Message::Request),
            RESPONSE_TYPE => Response::decode_body(r).map(Message::Response),
            _ => Err(DecodeError::UnknownType),
        }
    }
}

impl<'a> Decode<'a> for Request<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        match r.u8()? {
            REQUEST_TYPE => Request::decode_body(r),
            _ => Err(DecodeError::UnknownType),
        }
    }
}

impl<'a> Decode<'a> for Response<'a> {
    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        match r.u8()? {
            RESPONSE_TYPE => Response::decode_body(r),
            _ => Err(DecodeError::UnknownType),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ping_request_matches_spec_example() {
        let q = Request {
            tid: 0x1234,
            to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 49737),
            id: None,
            token: None,
            internal: true,
            command: 0,
            target: None,
            value: None,
        };
        let bytes = q.to_vec();
        assert_eq!(bytes, [0x03, 0x04, 0x34, 0x12, 0x7f, 0, 0, 1, 0x49, 0xc2, 0x00]);
        assert_eq!(q.encoded_len(), bytes.len());
        assert_eq!(Message::decode(&bytes), Ok(Message::Request(q)));
        assert_eq!(q.internal_command(), Some(InternalCommand::Ping));
    }

    #[test]
    fn unknown_type_and_truncation_are_errors() {
        assert_eq!(Message::decode(&[0x23, 0]), Err(DecodeError::UnknownType));
        assert_eq!(Message::decode(&[0x03, 0x01, 0, 0]), Err(DecodeError::Truncated));
        assert_eq!(Message::decode(&[]), Err(DecodeError::Truncated));
    }

    #[test]
    fn unknown_flag_bits_and_trailing_bytes_are_ignored() {
        let bytes = [0x13, 0x40, 0x01, 0x00, 1, 2, 3, 4, 5, 0, 0xaa, 0xbb];
        let Ok(Message::Response(r)) = Message::decode(&bytes) else { panic!("decode") };
        assert_eq!(r.tid, 1);
        assert_eq!(r.error, 0);
    }
}
