//! Connection set-up values: PEER_HANDSHAKE and PEER_HOLEPUNCH messages (read by relays
//! from untrusted peers) and the Noise and holepunch payloads (read after decryption).
//! The first byte picks the decoder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_fuzz::{round_trip, walk_list};
use tern_wire::Decode;
use tern_wire::handshake::{Handshake, Holepunch, HolepunchPayload, NoisePayload};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else { return };
    match selector % 4 {
        0 => round_trip!(Handshake, value),
        1 => round_trip!(Holepunch, value),
        2 => round_trip!(NoisePayload, value, |n: &NoisePayload<'_>| {
            if let Some(h) = &n.holepunch {
                walk_list(&h.relays);
            }
            walk_list(&n.addresses4);
            walk_list(&n.addresses6);
            if let Some(a) = &n.relay_addresses {
                walk_list(a);
            }
        }),
        _ => round_trip!(HolepunchPayload, value, |h: &HolepunchPayload<'_>| {
            if let Some(a) = &h.addresses {
                walk_list(a);
            }
        }),
    }
});
