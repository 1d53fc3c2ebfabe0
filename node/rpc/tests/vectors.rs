//! Golden vector `routing-table.json` from the JS reference (kademlia-routing-table
//! 1.0.6): rows by shared prefix, insertion into full rows refused, `closest()` in the
//! reference's bucket-walk order, and the exact XOR order queries use.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tern_base::NodeId;
use tern_rpc::{AddOutcome, K, RoutingTable, TableNode};
use tern_vectors::*;

#[test]
fn routing_table() {
    let mut f = VectorFile::load("dht/routing-table.json");
    for v in f.vectors() {
        let name = v["name"].as_str().unwrap();
        let inputs = &v["inputs"];
        let mut table = RoutingTable::new(NodeId(arr32(&inputs["selfId"])));
        let mut all = Vec::new();
        for n in inputs["nodes"].as_array().unwrap() {
            let id = NodeId(arr32(&n["id"]));
            let a = addr(n);
            assert_eq!(table.row_of(&id) as u64, n["bucket"].as_u64().unwrap(), "{a}: row");
            let outcome = table.add(TableNode::new(id, a, 0));
            assert_ne!(outcome, AddOutcome::Updated);
            all.push((id, a));
        }
        let target = NodeId(arr32(&v["hex"]));
        assert_eq!(table.row_of(&target) as u64, inputs["targetBucket"].as_u64().unwrap());
        let closest: Vec<String> = table.closest(&target, K).map(|n| n.addr.to_string()).collect();
        let expected: Vec<String> = v["expected"]["closest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(closest, expected, "closest() order");
        all.sort_by(|a, b| target.cmp_distance(&a.0, &b.0));
        let xor: Vec<String> = all.iter().take(K).map(|n| n.1.to_string()).collect();
        let expected: Vec<String> = v["expected"]["xorClosest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(xor, expected, "exact XOR order");
        f.checked(name);
    }
    assert_eq!(f.assert_all_checked(&[]), 1);
}
