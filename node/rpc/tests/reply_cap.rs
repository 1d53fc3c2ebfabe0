//! The reply budget of unauthenticated requests (`RpcConfig::max_reply_ratio`): a
//! request without a valid token may carry a spoofed source, so its reply is bounded
//! to `ratio ×` its size — closer nodes are left out first, then a value that alone
//! does not fit — while a request with a valid token (proof of an earlier round trip
//! to this address) and a node with the cap off get the whole reply.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_rpc::{
    Handler, IncomingRequest, NoApplication, RECOMMENDED_MAX_REPLY_RATIO, ReplyFields, Responder,
    Rpc, RpcConfig,
};
use tern_wire::rpc::{InternalCommand, Message, Request};
use tern_wire::{Decode, Encode};

const ME: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 49737);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 4000);

/// A persistent node whose table holds 40 nodes (so replies carry the full k = 20).
fn node(ratio: u32) -> Rpc {
    let config = RpcConfig {
        public_addr: Some(ME),
        server_port: ME.port(),
        max_reply_ratio: ratio,
        ..RpcConfig::default()
    };
    let mut rpc = Rpc::new(config, Timestamp::ZERO, 7, [3; 32]);
    for i in 0..40u8 {
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 1, i, 1), 49737);
        let id = tern_crypto::node_id(from);
        let ping = encode(&Request {
            tid: 1,
            to: ME,
            id: Some(&id),
            token: None,
            internal: true,
            command: InternalCommand::Ping as u64,
            target: None,
            value: None,
        });
        let mut tx = TxQueue::new(8);
        rpc.handle_datagram(
            Timestamp::ZERO,
            SocketId::SERVER,
            from,
            &ping,
            &mut NoApplication,
            &mut tx,
        );
    }
    assert!(rpc.table().len() >= 20, "table filled: {}", rpc.table().len());
    rpc
}

fn encode(req: &Request<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; req.encoded_len()];
    req.encode(&mut buf).unwrap();
    buf
}

/// FIND_NODE (or an app command) from CLIENT, with an optional token and value.
fn request(internal: bool, command: u64, token: Option<&[u8; 32]>) -> Vec<u8> {
    encode(&Request {
        tid: 9,
        to: ME,
        id: None,
        token,
        internal,
        command,
        target: Some(&[0x55; 32]),
        value: None,
    })
}

/// Delivers `data` from CLIENT; the reply datagram (bytes) sent back to CLIENT.
fn reply_to(rpc: &mut Rpc, handler: &mut impl Handler, data: &[u8]) -> Vec<u8> {
    let mut tx = TxQueue::new(8);
    rpc.handle_datagram(Timestamp::ZERO, SocketId::SERVER, CLIENT, data, handler, &mut tx);
    let replies: Vec<Vec<u8>> =
        tx.iter().filter(|(m, _)| m.dest == CLIENT).map(|(_, d)| d.to_vec()).collect();
    assert_eq!(replies.len(), 1, "one reply");
    replies.into_iter().next().unwrap()
}

fn closer_and_value(reply: &[u8]) -> (usize, Option<usize>) {
    match Message::decode(reply).unwrap() {
        Message::Response(r) => (r.closer_nodes.iter().count(), r.value.map(<[u8]>::len)),
        Message::Request(_) => panic!("a response"),
    }
}

/// Answers every app request with a value of `len` bytes, noting its value budget.
struct BigValue {
    len: usize,
    budget: Option<Option<usize>>,
}

impl Handler for BigValue {
    fn on_request(&mut self, _: Timestamp, _: &IncomingRequest<'_>, out: &mut Responder<'_>) {
        self.budget = Some(out.value_budget(ReplyFields::GENERIC));
        out.reply(Some(&vec![0xab; self.len]));
    }
}

#[test]
fn find_node_replies_are_trimmed_to_the_ratio_only_without_a_token() {
    let find_node = request(true, InternalCommand::FindNode as u64, None);
    // Off (the library default, as dht-rpc): k closer nodes, ~4× a 43-byte request.
    assert_eq!(RpcConfig::default().max_reply_ratio, 0);
    let mut off = node(0);
    let full = reply_to(&mut off, &mut NoApplication, &find_node);
    assert_eq!(closer_and_value(&full).0, 20);
    // The recommended ratio lets a whole FIND_NODE reply through.
    let mut rec = node(RECOMMENDED_MAX_REPLY_RATIO);
    assert_eq!(reply_to(&mut rec, &mut NoApplication, &find_node), full);
    assert_eq!(rec.stats().replies_trimmed, 0);

    let mut capped = node(2);
    let reply = reply_to(&mut capped, &mut NoApplication, &find_node);
    assert!(reply.len() <= 2 * find_node.len(), "{} > 2 × {}", reply.len(), find_node.len());
    let (n, _) = closer_and_value(&reply);
    assert!((1..20).contains(&n), "trimmed to {n} closer nodes");
    assert_eq!(capped.stats().replies_trimmed, 1);

    // A valid token proves the address: the whole reply.
    let token = capped.tokens().token(*CLIENT.ip());
    let with_token = request(true, InternalCommand::FindNode as u64, Some(&token));
    assert_eq!(closer_and_value(&reply_to(&mut capped, &mut NoApplication, &with_token)).0, 20);
    // An invalid one proves nothing: capped (and answered INVALID_TOKEN).
    let bad = request(true, InternalCommand::FindNode as u64, Some(&[1; 32]));
    let reply = reply_to(&mut capped, &mut NoApplication, &bad);
    assert!(reply.len() <= 2 * bad.len());
}

#[test]
fn a_value_larger_than_the_budget_is_withheld_and_the_room_goes_to_closer_nodes() {
    let get = request(false, 7, None);
    let budget = RECOMMENDED_MAX_REPLY_RATIO as usize * get.len();
    let mut rpc = node(RECOMMENDED_MAX_REPLY_RATIO);
    let mut big = BigValue { len: 16 * 1024, budget: None };
    let reply = reply_to(&mut rpc, &mut big, &get);
    assert!(reply.len() <= budget, "{} > {budget}", reply.len());
    assert_eq!(closer_and_value(&reply), (20, None), "value out, closer nodes back in");
    assert_eq!(rpc.stats().values_withheld, 1);

    // A value of exactly the advertised budget fits (closer nodes make room for it).
    let fits = big.budget.flatten().expect("capped");
    let mut exact = BigValue { len: fits, budget: None };
    let reply = reply_to(&mut rpc, &mut exact, &get);
    assert!(reply.len() <= budget);
    assert_eq!(closer_and_value(&reply), (0, Some(fits)));

    // With a token, the whole value.
    let token = rpc.tokens().token(*CLIENT.ip());
    let mut big = BigValue { len: 16 * 1024, budget: None };
    let reply = reply_to(&mut rpc, &mut big, &request(false, 7, Some(&token)));
    assert_eq!(closer_and_value(&reply), (20, Some(16 * 1024)));
    assert_eq!(big.budget, Some(None));
}
