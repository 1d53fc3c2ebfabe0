//! dht-rpc datagrams: `Message::decode` (and the `Request`/`Response` decoders on the
//! same bytes) must never panic, and whatever decodes must re-encode to an equal value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_fuzz::{round_trip, walk_list};
use tern_wire::Decode;
use tern_wire::rpc::{Message, Request, Response};

fuzz_target!(|data: &[u8]| {
    round_trip!(Message, data, |m: &Message<'_>| match m {
        Message::Request(q) => {
            let _ = q.internal_command();
            assert!(q.flags() <= 0x1f);
        }
        Message::Response(r) => {
            walk_list(&r.closer_nodes);
            assert!(r.flags() <= 0x1f);
        }
    });
    round_trip!(Request, data);
    round_trip!(Response, data, |r: &Response<'_>| walk_list(&r.closer_nodes));
});
