//! The forger: an on-path attacker that rewrites the writes a designated node sends.
//!
//! For ANNOUNCE and UNANNOUNCE it flips a bit of the signature, for MUTABLE_PUT a bit of
//! the signature (the last field of the value), for IMMUTABLE_PUT a bit of the value (so
//! it no longer hashes to the target). Everything else — tokens, ids, the target — stays
//! intact, so the request reaches the storage handler and only the signature or hash
//! check stands between it and the store. The safety checker then proves no such record
//! was stored.

use tern_wire::hyperdht::{Announce, Command};
use tern_wire::rpc::{Message, Request};
use tern_wire::{Decode, Encode};

/// If `datagram` is a write request, writes a tampered copy into `out` and returns true.
pub fn tamper(datagram: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(Message::Request(req)) = Message::decode(datagram) else { return false };
    if req.internal {
        return false;
    }
    let Some(value) = req.value else { return false };
    let mut forged = value.to_vec();
    match Command::from_u64(req.command) {
        Some(Command::Announce | Command::Unannounce) => {
            let Ok(msg) = Announce::decode(value) else { return false };
            let Some(sig) = msg.signature else { return false };
            let mut bad = *sig;
            bad[0] ^= 1;
            forged = Announce { signature: Some(&bad), ..msg }.to_vec();
        }
        Some(Command::MutablePut | Command::ImmutablePut) => {
            let Some(last) = forged.last_mut() else { return false };
            *last ^= 1;
        }
        _ => return false,
    }
    let req = Request { value: Some(&forged), ..req };
    out.clear();
    out.extend_from_slice(&req.to_vec());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn only_writes_are_rewritten() {
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1);
        let value = [7u8; 40];
        let mut req = Request {
            tid: 1,
            to,
            id: None,
            token: None,
            internal: false,
            command: Command::ImmutablePut as u64,
            target: Some(&[3; 32]),
            value: Some(&value),
        };
        let mut out = Vec::new();
        assert!(tamper(&req.to_vec(), &mut out));
        match Message::decode(&out) {
            Ok(Message::Request(r)) => {
                assert_eq!(r.target, Some(&[3; 32]));
                assert_ne!(r.value, Some(&value[..]));
            }
            other => panic!("{other:?}"),
        }
        req.command = Command::Lookup as u64;
        assert!(!tamper(&req.to_vec(), &mut out));
        req.internal = true;
        assert!(!tamper(&req.to_vec(), &mut out));
    }
}
