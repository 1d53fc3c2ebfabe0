//! Shared checks for the tern-wire fuzz targets.
//!
//! A target that only decoded would find panics and nothing else. Each target here also
//! re-encodes whatever decoded and decodes that again, so any disagreement between an
//! encoder and its decoder (a field written under the wrong flag, an `encoded_len` that
//! is off by one, a lossy re-encoding) is a crash too. Panicking is the point: libFuzzer
//! reports a panic as a crash and saves the input.

use std::fmt::Debug;

use tern_wire::{Encode, FixedItem, List};

/// Encodes `v`, asserting that `encoded_len` is exactly what the encoder writes and that
/// a buffer one byte short is refused rather than written partially or panicking.
pub fn encode_exact<T: Encode + ?Sized>(v: &T) -> Vec<u8> {
    let len = v.encoded_len();
    let mut out = vec![0u8; len];
    assert_eq!(v.encode(&mut out), Ok(len), "encoded_len disagrees with the encoder");
    if let Some(short) = len.checked_sub(1) {
        assert!(v.encode(&mut vec![0u8; short]).is_err(), "short buffer accepted");
    }
    assert_eq!(v.to_vec(), out, "to_vec disagrees with encode");
    out
}

/// Walks a decoded list every way it can be read, so lazy item decoding runs on
/// whatever bytes the decoder accepted.
pub fn walk_list<T: FixedItem + PartialEq + Debug>(list: &List<'_, T>) {
    assert_eq!(list.iter().count(), list.len());
    assert_eq!(list.iter().len(), list.len());
    assert_eq!(list.get(list.len()), None);
    assert_eq!(list.truncated(3).len(), list.len().min(3));
    if let Some(last) = list.len().checked_sub(1) {
        assert_eq!(list.get(last), list.iter().last());
    }
}

/// Decodes `$data` as `$ty`; on success runs `$walk` on the value, re-encodes it and
/// asserts that the encoding decodes exactly (consuming every byte) to an equal value,
/// and that encoding is a fixed point (re-encoding the re-decoded value gives the same
/// bytes). Decode errors are fine: malformed input is expected to be refused.
#[macro_export]
macro_rules! round_trip {
    ($ty:ident, $data:expr, $walk:expr) => {{
        if let Ok(v) = $ty::decode($data) {
            $walk(&v);
            let bytes = $crate::encode_exact(&v);
            match $ty::decode_exact(&bytes) {
                Ok(again) => {
                    assert_eq!(again, v, "re-encoded value decodes differently");
                    assert_eq!($crate::encode_exact(&again), bytes, "encoding not stable");
                }
                Err(e) => panic!("re-encoding of {v:?} does not decode: {e} ({bytes:02x?})"),
            }
        }
    }};
    ($ty:ident, $data:expr) => {
        $crate::round_trip!($ty, $data, |_: &$ty<'_>| ())
    };
}
