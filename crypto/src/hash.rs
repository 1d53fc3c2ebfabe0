//! BLAKE2b helpers with libsodium `crypto_generichash` semantics, and node ids.
//!
//! Every hash on the HyperDHT wire is BLAKE2b: `H32` (32-byte output), `H64` (64-byte output)
//! and keyed `H32k` (the BLAKE2b *key parameter*, not a prefix). The output length is part of
//! BLAKE2b's parameter block, so `H32` is **not** a truncation of `H64`; these helpers pick the
//! right variant so callers cannot get that wrong. Multi-part variants hash the concatenation of
//! their parts without building it (spec `hyperdht-dht.md`, conventions).
//!
//! Node ids (spec §3.4) are `H32(addr)` of the 6-byte IPv4 address encoding; they live here
//! rather than in `tern-wire` because they are pure hashing and the routing and token code of
//! every shard calls them on the hot path.

use std::net::{Ipv4Addr, SocketAddrV4};

use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2b256, Blake2b512, Blake2bMac, Digest};

/// Largest BLAKE2b key, in bytes (the BLAKE2b block size is 128, keys are limited to 64).
pub const MAX_KEY_LEN: usize = 64;

/// `H32(data)`: unkeyed BLAKE2b with a 32-byte output (libsodium `crypto_generichash`).
#[must_use]
pub fn hash32(data: &[u8]) -> [u8; 32] {
    Blake2b256::digest(data).into()
}

/// `H32(parts[0] || parts[1] || ...)` without concatenating.
#[must_use]
pub fn hash32_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b256::new();
    for part in parts {
        Digest::update(&mut h, part);
    }
    h.finalize().into()
}

/// `H64(data)`: unkeyed BLAKE2b with a 64-byte output (the Noise `HASH` of spec §9.3).
#[must_use]
pub fn hash64(data: &[u8]) -> [u8; 64] {
    Blake2b512::digest(data).into()
}

/// `H64(parts[0] || parts[1] || ...)` without concatenating.
#[must_use]
pub fn hash64_parts(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = Blake2b512::new();
    for part in parts {
        Digest::update(&mut h, part);
    }
    h.finalize().into()
}

/// Compile-time check that a key length is a valid BLAKE2b key length (1..=64).
///
/// Evaluated during monomorphisation, so an out-of-range `N` is a build error, never a
/// runtime panic.
struct KeyLen<const N: usize>;

impl<const N: usize> KeyLen<N> {
    const VALID: () = assert!(N >= 1 && N <= MAX_KEY_LEN, "BLAKE2b keys are 1..=64 bytes");
}

/// `H32k(msg, key)`: BLAKE2b-256 keyed with `key` (libsodium `crypto_generichash(out32, msg,
/// key)`). Keys are fixed-size arrays of 1..=64 bytes, checked at compile time; every key on
/// this wire is 32 (secrets) or 64 (handshake hash) bytes.
#[must_use]
pub fn hash32_keyed<const N: usize>(msg: &[u8], key: &[u8; N]) -> [u8; 32] {
    hash32_keyed_parts(&[msg], key)
}

/// `H32k(parts[0] || parts[1] || ..., key)` without concatenating.
#[must_use]
pub fn hash32_keyed_parts<const N: usize>(parts: &[&[u8]], key: &[u8; N]) -> [u8; 32] {
    #[allow(clippy::let_unit_value)] // forces the compile-time key length check
    let () = KeyLen::<N>::VALID;
    // `new_from_slice` only fails for keys longer than 64 bytes, which `KeyLen` rules out at
    // compile time; the zero fallback is unreachable and exists only to avoid a panic path.
    match <Blake2bMac<U32> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            for part in parts {
                Mac::update(&mut mac, part);
            }
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// The 6-byte compact-encoding of an IPv4 address: 4 octets in written order, then the port
/// as uint16 little-endian (spec §1, "addr").
#[must_use]
pub fn encode_addr(addr: SocketAddrV4) -> [u8; 6] {
    let [a, b, c, d] = addr.ip().octets();
    let [p0, p1] = addr.port().to_le_bytes();
    [a, b, c, d, p0, p1]
}

/// A node's id on the DHT: `H32(addr(host, port))` of its public address (spec §3.4).
///
/// A receiver recomputes it from a datagram's source address and discards a claimed id that
/// does not match, so this is computed for (nearly) every incoming request.
#[must_use]
pub fn node_id(addr: SocketAddrV4) -> [u8; 32] {
    hash32(&encode_addr(addr))
}

/// Writes the ASCII dotted-quad form of `host` (what JS stringifies an address to) into a stack
/// buffer and returns it with its length; at most 15 bytes (`255.255.255.255`).
///
/// Tokens (spec §3.6) and holepunch address tokens (§10.2) hash this string, and they are
/// computed per request, so this avoids the allocation `host.to_string()` would make.
#[must_use]
pub fn ascii_host(host: Ipv4Addr) -> ([u8; 15], usize) {
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in host.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        // Shortest decimal form, no leading zeros, as `Number.prototype.toString` writes it.
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + (octet / 10) % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    (buf, len)
}

/// `H32k(ascii(host), key)`: the shape shared by DHT round-trip tokens (§3.6) and holepunch
/// address tokens (§10.2).
#[must_use]
pub fn host_token(host: Ipv4Addr, key: &[u8; 32]) -> [u8; 32] {
    let (buf, len) = ascii_host(host);
    hash32_keyed(&buf[..len], key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_host_matches_display() {
        for ip in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(10, 20, 100, 9),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(1, 10, 199, 200),
        ] {
            let (buf, len) = ascii_host(ip);
            assert_eq!(&buf[..len], ip.to_string().as_bytes());
        }
    }

    #[test]
    fn h32_is_not_truncated_h64() {
        assert_ne!(hash32(b"x")[..], hash64(b"x")[..32]);
    }

    #[test]
    fn parts_equal_concatenation() {
        assert_eq!(hash32_parts(&[b"ab", b"", b"cd"]), hash32(b"abcd"));
        assert_eq!(hash64_parts(&[b"a", b"bcd"]), hash64(b"abcd"));
        let key = [7u8; 64];
        assert_eq!(hash32_keyed_parts(&[b"ab", b"cd"], &key), hash32_keyed(b"abcd", &key));
    }

    #[test]
    fn keyed_differs_from_unkeyed() {
        assert_ne!(hash32_keyed(b"abc", &[0u8; 32]), hash32(b"abc"));
    }

    proptest::proptest! {
        #[test]
        fn ascii_host_roundtrips(a: u8, b: u8, c: u8, d: u8) {
            let ip = Ipv4Addr::new(a, b, c, d);
            let (buf, len) = ascii_host(ip);
            let want = ip.to_string();
            proptest::prop_assert_eq!(&buf[..len], want.as_bytes());
        }
    }
}
