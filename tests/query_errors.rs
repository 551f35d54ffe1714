//! A user's mistakes in SQL get one plain message that says what to do (issue 23 §4), and the
//! statements users try first (SHOW TABLES, DESCRIBE) work.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;

fn query(lake: &std::path::Path, sql: &str) -> (bool, String, String) {
    let out = std::process::Command::new(bin())
        .args(["query", "--lake"])
        .arg(lake)
        .arg(sql)
        .output()
        .expect("spawn auditlake");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sql_mistakes_are_explained_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    ingest(&lake, &[], &[&fixture("identities.jsonl")]);
    // Each mistake: what the message must say, and the text it must say only once.
    let cases = [
        (
            "SELECT * FROM nope",
            "unknown table `nope`; the lake's relations are audit, audit_events, requests, audit_id_reuse",
            "nope",
        ),
        (
            "SELECT nocol FROM requests",
            "no column `nocol`; `auditlake schema` lists",
            "nocol",
        ),
        ("SELEC 1", "SQL error", "SQL error"),
    ];
    for (sql, says, once) in cases {
        let (ok, _, err) = query(&lake, sql);
        assert!(!ok, "{sql} succeeded");
        assert!(err.contains(says), "{sql}: {err}");
        assert_eq!(
            err.matches(once).count(),
            1,
            "{sql}: said more than once: {err}"
        );
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
        assert!(!err.contains("stack backtrace"), "{err}");
    }
    let (ok, out, err) = query(&lake, "SHOW TABLES");
    assert!(ok, "{err}");
    for rel in ["audit", "audit_events", "requests", "audit_id_reuse"] {
        assert!(out.contains(&format!("| {rel} ")), "{rel} missing:\n{out}");
    }
    let (ok, out, err) = query(&lake, "DESCRIBE requests");
    assert!(ok, "{err}");
    assert!(out.contains("actor_username"), "{out}");
}
