//! Only validly signed (or correctly hashed) records are stored. Three forger nodes sit
//! behind an on-path attacker that flips a bit of the signature of every ANNOUNCE,
//! UNANNOUNCE and MUTABLE_PUT they send and of the value of every IMMUTABLE_PUT; tokens,
//! ids and targets stay valid, so only the nodes' signature and hash checks stand in the
//! way. Every forged write must fail, no store may hold one (the safety checker compares
//! every store with the ledger of honest writes), and lookups never return a forged key
//! while honest writes of the same topics succeed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::Duration;

use tern_base::NodeId;
use tern_core::NodeCommand;
use tern_dht::{OpError, OpOutput};
use tern_sim::workload::{key_pair, lookups, persistent_network, run_batch};
use tern_sim::{Outcome, WorldConfig, safety};

#[test]
fn forged_writes_are_never_stored() {
    let (mut w, nodes) = persistent_network(WorldConfig::new(0xf0f0), 200, Duration::from_secs(60));
    let forgers = [nodes[10], nodes[20], nodes[30]];
    for f in forgers {
        w.set_forger(f, true);
    }
    let topic = NodeId(w.rng().bytes32());
    let honest_kp = key_pair(w.rng());
    let mut commands = vec![(
        nodes[40],
        NodeCommand::Announce { topic, key_pair: honest_kp.clone(), relay_addresses: vec![] },
    )];
    let mut forged_keys = Vec::new();
    for f in forgers {
        let kp = key_pair(w.rng());
        forged_keys.push(*kp.public_key().as_bytes());
        commands.push((
            f,
            NodeCommand::Announce { topic, key_pair: kp.clone(), relay_addresses: vec![] },
        ));
        commands
            .push((f, NodeCommand::MutablePut { key_pair: kp, value: b"forged".to_vec(), seq: 1 }));
        commands.push((f, NodeCommand::ImmutablePut(b"forged immutable".to_vec())));
    }
    let records = run_batch(&mut w, commands, Duration::from_secs(5), Duration::from_secs(60));
    let results: Vec<_> = records.iter().map(|r| r.as_ref().and_then(|r| r.done.clone())).collect();
    assert!(
        matches!(results[0], Some((_, Outcome::Dht(Ok(OpOutput::Stored { stored })))) if stored > 0),
        "the honest announce is stored: {:?}",
        results[0]
    );
    for r in &results[1..] {
        assert!(
            matches!(r, Some((_, Outcome::Dht(Err(OpError::CommitFailed))))),
            "every forged write is refused by every node: {r:?}"
        );
    }
    assert!(w.stats().forged >= 9 * 10, "the attacker rewrote the commits ({})", w.stats().forged);

    let asker = nodes[150];
    let report =
        lookups(&mut w, &[(asker, topic, *honest_kp.public_key().as_bytes())], Duration::ZERO);
    assert_eq!(report.found, 1, "the honest record is found");
    let op = w.command(asker, NodeCommand::Lookup(topic)).unwrap();
    w.run_for(Duration::from_secs(10));
    let found = w.take_op(asker, op).unwrap().found;
    assert!(forged_keys.iter().all(|k| !found.contains(k)), "no forged key is returned");

    w.run_for(Duration::from_secs(6 * 60));
    let v = safety(&w);
    assert!(v.is_empty(), "{}", v.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    let stored: usize = nodes.iter().map(|i| w.nodes()[*i].node().store().mutables.len()).sum();
    assert_eq!(stored, 0, "no mutable record at all: only the forgers put one");
}
