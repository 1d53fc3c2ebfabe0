//! The two error types of the codec.
//!
//! [`DecodeError`] is what remote input produces: it is small and `Copy` because the
//! node only ever counts it in its stats and drops the datagram (DESIGN.md principle 3).
//! [`EncodeError`] is local misuse: the caller's buffer was too small.

use std::fmt;

/// Why a datagram or value could not be decoded. Cheap to copy and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field was complete.
    Truncated,
    /// An array count above the compact-encoding cap of 0x100000 elements.
    ArrayTooLong,
    /// A string field was not valid UTF-8.
    InvalidUtf8,
    /// The first byte of a datagram is not a known message type / magic.
    UnknownType,
    /// A field holds a value outside its domain (an unknown enum value, a number too
    /// large for its field).
    InvalidValue,
    /// Bytes were left over where the format says the value ends.
    TrailingBytes,
}

impl DecodeError {
    /// A short, stable, snake_case label for metrics (`drops{reason=...}`).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::ArrayTooLong => "array_too_long",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::UnknownType => "unknown_type",
            Self::InvalidValue => "invalid_value",
            Self::TrailingBytes => "trailing_bytes",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl std::error::Error for DecodeError {}

/// Encoding failed; the only cause is a buffer smaller than the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer holds fewer bytes than [`crate::Encode::encoded_len`].
    BufferTooSmall {
        /// Bytes the encoding needs.
        needed: usize,
        /// Bytes the buffer had.
        available: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed, available } => {
                write!(f, "buffer too small: need {needed} bytes, have {available}")
            }
        }
    }
}

impl std::error::Error for EncodeError {}
