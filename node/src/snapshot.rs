//! Routing-table snapshots: a small, versioned file of node addresses that a restarted
//! node reads back and adds to its bootstrap contacts, so it rejoins through the nodes
//! it knew instead of depending on the bootstrap nodes alone (which may be down, slow
//! or far away). The CLI writes one per node under `--state-dir` every minute and at a
//! clean stop; this module only knows the format and how to write it safely.
//!
//! Format (all integers little-endian):
//!
//! ```text
//! magic   8 bytes  "tern-rt\n"
//! version u8       1
//! count   u16      ≤ MAX_NODES
//! nodes   count × (IPv4 4 bytes in network order, port u16)
//! check   8 bytes  the first 8 bytes of BLAKE2b-256 over everything before it
//! ```
//!
//! Only addresses are kept: every node in a routing table is persistent, so its id is
//! `H32(ip:port)` and need not be stored. A file is written to a temporary name, synced
//! and renamed over the old one, so a crash leaves the old snapshot or the new one,
//! never half of one; reading refuses anything that is not exactly a snapshot (wrong
//! magic, other version, wrong length, bad checksum, too large) with an error the
//! caller logs before starting without it. Nothing here panics on file contents.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

/// The file's first bytes: says what the file is (and that it is binary).
const MAGIC: [u8; 8] = *b"tern-rt\n";
/// The format version written; files of other versions are refused, not guessed at.
pub const FORMAT_VERSION: u8 = 1;
/// Most addresses kept. A bootstrap walk needs k = 20 live contacts; 256 of the most
/// recently seen nodes leave a wide margin for churn while the process was down and
/// keep the file small (1.5 KiB).
pub const MAX_NODES: usize = 256;
/// Bytes of one address.
const NODE_BYTES: usize = 6;
/// Bytes of the checksum.
const CHECK_BYTES: usize = 8;
/// Bytes before the addresses.
const HEADER_BYTES: usize = MAGIC.len() + 1 + 2;
/// Largest valid file: anything bigger is refused before it is read.
pub const MAX_FILE_BYTES: usize = HEADER_BYTES + MAX_NODES * NODE_BYTES + CHECK_BYTES;

/// Why bytes are not a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a tern routing-table snapshot (another file, or empty).
    #[error("not a tern routing-table snapshot")]
    NotASnapshot,
    /// Written by another version of tern.
    #[error("snapshot format version {0} (this tern reads version {FORMAT_VERSION})")]
    Version(u8),
    /// The length does not match the node count (truncated or padded).
    #[error("snapshot length {len} does not match its {count} nodes")]
    Length {
        /// Bytes found.
        len: usize,
        /// Nodes the header announces.
        count: usize,
    },
    /// More nodes than [`MAX_NODES`].
    #[error("snapshot holds {0} nodes, more than {MAX_NODES}")]
    TooMany(usize),
    /// The checksum does not match: the file was damaged.
    #[error("snapshot checksum mismatch (damaged file)")]
    Checksum,
}

/// Why [`read`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file exists but could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Larger than any snapshot can be.
    #[error("{path} is larger than a snapshot can be ({MAX_FILE_BYTES} bytes)")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The contents are not a valid snapshot.
    #[error("{path}: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: DecodeError,
    },
}

/// Why [`write`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Creating, writing, syncing or renaming the file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The snapshot file of the `index`-th node of a process in `dir`.
pub fn path_in(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("routing-table-{index}.bin"))
}

/// Encodes up to [`MAX_NODES`] of `nodes` (the first ones; callers put the most useful
/// first).
pub fn encode(nodes: &[SocketAddrV4]) -> Vec<u8> {
    let nodes = &nodes[..nodes.len().min(MAX_NODES)];
    let mut out = Vec::with_capacity(HEADER_BYTES + nodes.len() * NODE_BYTES + CHECK_BYTES);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    // At most MAX_NODES (256): fits u16.
    out.extend_from_slice(&(nodes.len() as u16).to_le_bytes());
    for n in nodes {
        out.extend_from_slice(&n.ip().octets());
        out.extend_from_slice(&n.port().to_le_bytes());
    }
    let check = tern_crypto::hash32(&out);
    out.extend_from_slice(&check[..CHECK_BYTES]);
    out
}

/// Decodes a snapshot. Addresses no node can listen on (port 0, unspecified,
/// broadcast, multicast) are skipped: they could only come from a foreign writer.
pub fn decode(bytes: &[u8]) -> Result<Vec<SocketAddrV4>, DecodeError> {
    if bytes.len() < HEADER_BYTES + CHECK_BYTES || bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::NotASnapshot);
    }
    let version = bytes[MAGIC.len()];
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let count = usize::from(u16::from_le_bytes([bytes[MAGIC.len() + 1], bytes[MAGIC.len() + 2]]));
    if count > MAX_NODES {
        return Err(DecodeError::TooMany(count));
    }
    let body_len = HEADER_BYTES + count * NODE_BYTES;
    if bytes.len() != body_len + CHECK_BYTES {
        return Err(DecodeError::Length { len: bytes.len(), count });
    }
    let (body, check) = bytes.split_at(body_len);
    if tern_crypto::hash32(body)[..CHECK_BYTES] != *check {
        return Err(DecodeError::Checksum);
    }
    Ok(body[HEADER_BYTES..]
        .chunks_exact(NODE_BYTES)
        .map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddrV4::new(ip, u16::from_le_bytes([c[4], c[5]]))
        })
        .filter(|a| {
            let ip = a.ip();
            a.port() != 0 && !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast()
        })
        .collect())
}

/// Reads the snapshot at `path`: `Ok(None)` when there is none yet.
pub fn read(path: &Path) -> Result<Option<Vec<SocketAddrV4>>, ReadError> {
    let io = |source| ReadError::Io { path: path.to_owned(), source };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    // Bounded read: one byte more than the largest snapshot tells "too large" apart
    // without reading a huge foreign file into memory.
    let mut bytes = Vec::with_capacity(MAX_FILE_BYTES + 1);
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { path: path.to_owned() });
    }
    decode(&bytes).map(Some).map_err(|source| ReadError::Decode { path: path.to_owned(), source })
}

/// Writes a snapshot of `nodes` to `path` atomically: a temporary file in the same
/// directory, synced, then renamed over `path` (and the directory synced, best
/// effort, so the rename itself survives a power cut). Returns the nodes written.
pub fn write(path: &Path, nodes: &[SocketAddrV4]) -> Result<usize, WriteError> {
    let bytes = encode(nodes);
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError::Io { path: path.to_owned(), source });
    }
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(nodes.len().min(MAX_NODES))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddrV4> {
        (0..n)
            .map(|i| SocketAddrV4::new(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8), 49737))
            .collect()
    }

    #[test]
    fn round_trip_and_cap() {
        let nodes = addrs(3);
        assert_eq!(decode(&encode(&nodes)).unwrap(), nodes);
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::<SocketAddrV4>::new());
        let many = addrs(MAX_NODES + 50);
        let bytes = encode(&many);
        assert_eq!(bytes.len(), MAX_FILE_BYTES);
        assert_eq!(decode(&bytes).unwrap(), many[..MAX_NODES]);
    }

    #[test]
    fn damaged_and_foreign_bytes_are_refused() {
        let good = encode(&addrs(5));
        assert_eq!(decode(b""), Err(DecodeError::NotASnapshot));
        assert_eq!(decode(b"{\"nodes\": []}\n"), Err(DecodeError::NotASnapshot));
        let mut v2 = good.clone();
        v2[8] = 2;
        assert_eq!(decode(&v2), Err(DecodeError::Version(2)));
        assert!(matches!(decode(&good[..good.len() - 1]), Err(DecodeError::Length { .. })));
        let mut flipped = good.clone();
        flipped[12] ^= 1;
        assert_eq!(decode(&flipped), Err(DecodeError::Checksum));
        let mut huge = good.clone();
        huge[9..11].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(decode(&huge), Err(DecodeError::TooMany(65_535)));
        // Every truncation and every single-byte change is refused, none panics.
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err());
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] = b[i].wrapping_add(1);
            assert!(decode(&b).is_err(), "byte {i} changed");
        }
    }

    #[test]
    fn unusable_addresses_are_skipped() {
        let mut nodes = addrs(2);
        nodes.push(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 0));
        nodes.push(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1));
        nodes.push(SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 1));
        assert_eq!(decode(&encode(&nodes)).unwrap(), addrs(2));
    }

    #[test]
    fn files_are_replaced_atomically_and_bounded_on_read() {
        let dir = std::env::temp_dir().join(format!("tern-snapshot-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_in(&dir, 0);
        let _ = std::fs::remove_file(&path);
        assert!(read(&path).unwrap().is_none());
        assert_eq!(write(&path, &addrs(4)).unwrap(), 4);
        assert_eq!(write(&path, &addrs(7)).unwrap(), 7);
        assert_eq!(read(&path).unwrap().unwrap(), addrs(7));
        // No temporary file is left behind.
        let names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::write(&path, vec![0u8; MAX_FILE_BYTES * 4]).unwrap();
        assert!(matches!(read(&path), Err(ReadError::TooLarge { .. })));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(read(&path), Err(ReadError::Decode { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
