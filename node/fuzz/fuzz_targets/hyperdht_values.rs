//! hyperdht storage values. The first byte picks the decoder so that one corpus covers
//! them all and libFuzzer can learn each layout; the rest is the value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_fuzz::{round_trip, walk_list};
use tern_wire::Decode;
use tern_wire::hyperdht::{
    Announce, LookupReply, MutablePut, MutableRecord, PeerRecord, PluginRequest,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else { return };
    match selector % 6 {
        0 => round_trip!(PeerRecord, value, |p: &PeerRecord<'_>| walk_list(&p.relay_addresses)),
        1 => round_trip!(Announce, value, |a: &Announce<'_>| {
            if let Some(p) = &a.peer {
                walk_list(&p.relay_addresses);
            }
        }),
        2 => round_trip!(LookupReply, value, |l: &LookupReply<'_>| {
            // Raw records were validated when decoding, so iteration must yield them all.
            assert_eq!(l.peers.iter().count(), l.peers.len());
            l.peers.iter().for_each(|p| walk_list(&p.relay_addresses));
        }),
        3 => round_trip!(MutablePut, value),
        4 => round_trip!(MutableRecord, value),
        _ => round_trip!(PluginRequest, value),
    }
});
