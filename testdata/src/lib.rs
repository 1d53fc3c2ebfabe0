//! tern-vectors: the loader every golden-vector test uses (a dev-dependency only).
//!
//! It reads a file from the repo's `testdata/vectors` (never from outside the repo) and
//! keeps count of which vectors a test checked, so a test fails when a file is missing
//! or a vector was skipped. Panicking is how a test helper reports failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;

pub use serde_json::Value;

/// A vector file and the names of the vectors a test has checked in it.
pub struct VectorFile {
    pub path: PathBuf,
    pub json: Value,
    checked: BTreeSet<String>,
}

impl VectorFile {
    /// Loads `testdata/vectors/<rel>`; panics (failing the test) if it is missing.
    pub fn load(rel: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors").join(rel);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("vector file {} missing: {e}", path.display()));
        let json: Value = serde_json::from_str(&text).expect("vector file is JSON");
        Self { path, json, checked: BTreeSet::new() }
    }

    /// All vectors in the file.
    pub fn vectors(&self) -> Vec<Value> {
        self.json["vectors"].as_array().expect("vectors array").clone()
    }

    /// Marks a vector as checked.
    pub fn checked(&mut self, name: &str) {
        assert!(self.checked.insert(name.to_owned()), "vector {name} checked twice");
    }

    /// Asserts that every vector of the file was checked, except those named in
    /// `elsewhere` (checked by another crate's test, which asserts it in turn); returns
    /// the count checked here.
    pub fn assert_all_checked(&self, elsewhere: &[&str]) -> usize {
        let all: BTreeSet<String> =
            self.vectors().iter().map(|v| v["name"].as_str().expect("name").to_owned()).collect();
        let expected: BTreeSet<String> =
            all.iter().filter(|n| !elsewhere.contains(&n.as_str())).cloned().collect();
        for e in elsewhere {
            assert!(all.contains(*e), "{}: delegated vector {e} not in file", self.path.display());
        }
        let missing: Vec<_> = expected.difference(&self.checked).collect();
        assert!(missing.is_empty(), "{}: vectors not checked: {missing:?}", self.path.display());
        assert!(!self.checked.is_empty(), "{}: no vectors checked", self.path.display());
        eprintln!("{}: {} vectors checked", self.path.display(), self.checked.len());
        self.checked.len()
    }
}

pub fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

pub fn arr32(v: &Value) -> [u8; 32] {
    unhex(v).try_into().expect("32 bytes")
}

pub fn opt_arr32(v: &Value) -> Option<[u8; 32]> {
    if v.is_null() { None } else { Some(arr32(v)) }
}

pub fn addr(v: &Value) -> SocketAddrV4 {
    let host: Ipv4Addr = v["host"].as_str().expect("host").parse().expect("ipv4");
    SocketAddrV4::new(host, v["port"].as_u64().expect("port") as u16)
}

pub fn opt_addr(v: &Value) -> Option<SocketAddrV4> {
    if v.is_null() { None } else { Some(addr(v)) }
}

pub fn addr6(v: &Value) -> SocketAddrV6 {
    let host: Ipv6Addr = v["host"].as_str().expect("host").parse().expect("ipv6");
    SocketAddrV6::new(host, v["port"].as_u64().expect("port") as u16, 0, 0)
}

pub fn addrs(v: &Value) -> Vec<SocketAddrV4> {
    v.as_array().map(|a| a.iter().map(addr).collect()).unwrap_or_default()
}
