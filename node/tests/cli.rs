//! The `tern` binary as a person uses it: `tern testnet` comes up and passes its
//! self-check, and every probe command works against it (and fails with a non-zero
//! exit when it should). Loopback only; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::bin::{Killed, TERN, start_testnet};

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

fn probe(args: &[&str]) -> Output {
    let out = Command::new(TERN)
        .args(args)
        .args(["--bootstrap", "127.0.0.1:26700", "--json"])
        .output()
        .unwrap();
    eprintln!(
        "tern {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
    );
    out
}

fn json_line(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().unwrap_or("{}")).unwrap()
}

#[test]
fn testnet_self_check_and_probes() {
    let (_guard, lines) = start_testnet(&["--nodes", "6", "--port", "26700"]);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("check") && l.ends_with("ok")).count(),
        3,
        "{lines:?}"
    );

    let ping = probe(&["ping", "127.0.0.1:26701"]);
    assert!(ping.status.success());
    assert_eq!(json_line(&ping)["answered"], true);
    assert!(!probe(&["ping", "127.0.0.1:9"]).status.success(), "no answer exits non-zero");

    let put = probe(&["immutable-put", "hello tern"]);
    assert!(put.status.success());
    let hash = json_line(&put)["hash"].as_str().unwrap().to_owned();
    let get = probe(&["immutable-get", &hash]);
    assert_eq!(json_line(&get)["value"], hex::encode("hello tern"));

    let seed = "11".repeat(32);
    assert!(probe(&["mutable-put", "--seed", &seed, "v1", "--seq", "4"]).status.success());
    let pk = hex::encode(tern::KeyPair::from_seed(&[0x11; 32]).public_key().as_bytes());
    let got = json_line(&probe(&["mutable-get", &pk]));
    assert_eq!(
        (got["seq"].as_u64(), got["value"].as_str()),
        (Some(4), Some(hex::encode("v1").as_str()))
    );

    // Announce for a while in the background; a lookup meanwhile finds it.
    let topic = "ab".repeat(32);
    let mut announcer = Command::new(TERN)
        .args([
            "announce",
            &topic,
            "--seed",
            &seed,
            "--for",
            "20",
            "--bootstrap",
            "127.0.0.1:26700",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(announcer.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let _announcer = Killed(announcer);
    assert!(first.contains("stored"), "{first}");
    let found = probe(&["lookup", &topic]);
    assert!(found.status.success());
    assert_eq!(json_line(&found)["publicKey"], pk);
    assert!(!probe(&["lookup", &"cd".repeat(32)]).status.success(), "nothing found exits non-zero");
    assert!(!probe(&["immutable-get", "zz"]).status.success(), "bad hex exits non-zero");
}
