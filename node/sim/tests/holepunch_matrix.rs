//! The NAT matrix between tern nodes in the simulated network: a listening server and a
//! connecting client, each public or behind one kind of NAT (consistent mapping with
//! open, address- or port-restricted filtering; random mapping), next to 40 public
//! persistent nodes that relay. Every pair must end the way the holepunch rules say:
//! connected unless both NATs randomise ports (then refused with a holepunch error, as
//! in the reference). A port-randomising side opens birthday sockets while the other
//! sprays its ports, so RANDOM here / port-restricted there connects too (see
//! node/core/src/conn/punch/birthday.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::Duration;

use tern_core::{ConnectError, NodeCommand};
use tern_crypto::KeyPair;
use tern_netsim::{Filtering, NatConfig};
use tern_sim::workload::add_nodes;
use tern_sim::{Mode, Outcome, Placement, World, WorldConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Public,
    Consistent(Filtering),
    Random,
}

impl Side {
    fn placement(self, w: &mut World) -> Placement {
        match self {
            Side::Public => Placement::Public,
            Side::Consistent(f) => Placement::Behind(w.add_nat(NatConfig::consistent(f))),
            Side::Random => Placement::Behind(w.add_nat(NatConfig::random())),
        }
    }
}

/// Runs one pair; returns the connect outcome.
fn pair(seed: u64, server: Side, client: Side) -> Result<u32, ConnectError> {
    let mut w = World::new(WorldConfig::new(seed));
    w.add_bootstrappers(2);
    add_nodes(&mut w, 40, Mode::Persistent, Duration::from_secs(5), |_| Placement::Public);
    let at = w.now() + Duration::from_secs(10);
    let place = server.placement(&mut w);
    let s = w.add_node(Mode::Adaptive, place, at);
    let place = client.placement(&mut w);
    let c = w.add_node(Mode::Ephemeral, place, at);
    // Long enough for the server's firewall test (adaptive nodes run it after
    // bootstrapping) and the NAT samplers to settle.
    w.run_for(Duration::from_secs(120));
    let kp = KeyPair::from_seed(&[seed as u8; 32]);
    let pk = *kp.public_key().as_bytes();
    let listen = w.command(s, NodeCommand::Listen { key_pair: kp, firewall: None }).unwrap();
    w.run_for(Duration::from_secs(20));
    assert!(w.op(s, listen).is_some_and(|r| r.succeeded()), "{server:?} listen announced");
    let key_pair = KeyPair::from_seed(&[0x77; 32]);
    let op = w.command(c, NodeCommand::Connect { public_key: pk, key_pair }).unwrap();
    w.run_for(Duration::from_secs(60));
    match w.op(c, op).and_then(|r| r.done.clone()) {
        Some((_, Outcome::Connect(result))) => result,
        other => panic!("{server:?} <- {client:?}: connect did not finish: {other:?}"),
    }
}

#[test]
fn every_nat_pair_connects_or_is_refused_as_the_rules_say() {
    let sides = [
        Side::Public,
        Side::Consistent(Filtering::Open),
        Side::Consistent(Filtering::AddressRestricted),
        Side::Consistent(Filtering::PortRestricted),
        Side::Random,
    ];
    let mut table = String::new();
    let mut wrong = Vec::new();
    for (i, &server) in sides.iter().enumerate() {
        for (j, &client) in sides.iter().enumerate() {
            let result = pair(0x4e47 + (i * 8 + j) as u64, server, client);
            let reachable = server == Side::Public || client == Side::Public;
            let expect_ok = reachable
                || match (server, client) {
                    // Two port-randomising NATs: no strategy (as in the reference).
                    (Side::Random, Side::Random) => false,
                    // A RANDOM side opens birthday sockets, the other sprays ports.
                    _ => true,
                };
            table.push_str(&format!("{server:?} <- {client:?}: {result:?}\n"));
            let ok = result.is_ok();
            let refused_cleanly = matches!(
                result,
                Err(ConnectError::HolepunchFailed(_) | ConnectError::HolepunchUnsupported)
            );
            if ok != expect_ok || (!ok && !refused_cleanly) {
                wrong.push(format!("{server:?} <- {client:?}: {result:?}"));
            }
        }
    }
    println!("{table}");
    assert!(wrong.is_empty(), "unexpected outcomes:\n{}", wrong.join("\n"));
}
