//! Helpers for tests of encrypted connections: the checksummed byte pattern shared with
//! `interop/stream.js`, and an echo round trip over a split `SecureStream`.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tern::SecureStream;

/// The byte pattern `interop/stream.js` uses: SHA-256 of the decimal counter, chained.
pub fn pattern(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut i = 0u64;
    while out.len() < n {
        out.extend_from_slice(&Sha256::digest(i.to_string().as_bytes()));
        i += 1;
    }
    out.truncate(n);
    out
}

/// Sends `data` and reads the echo concurrently (≤ 240 s); returns what came back.
pub fn round_trip(stream: SecureStream, data: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = stream.split();
    let to_send = data.to_vec();
    let writer = std::thread::spawn(move || {
        for chunk in to_send.chunks(64 * 1024) {
            wr.write_all(chunk).unwrap();
        }
        wr.close_blocking().unwrap();
        wr
    });
    let mut back = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        match rd.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read failed after {} bytes: {e}", back.len()),
        }
    }
    drop(writer.join().unwrap());
    back
}
