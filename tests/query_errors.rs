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

/// Tables are capped (rows and cell width) where asked or on a terminal, and say what was left
/// out; CSV is never capped; SQL comes from a file or standard input, several statements in turn.
#[test]
fn tables_are_capped_and_scripts_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    ingest(&lake, &[], &[&fixture("identities.jsonl")]);
    let run_with = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut child = std::process::Command::new(bin())
            .args(["query", "--lake"])
            .arg(&lake)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let sql = "SELECT audit_id, request_uri FROM audit ORDER BY audit_id";
    let capped = run_with(&["--max-rows", "3", "--max-width", "10", sql], None);
    assert!(
        capped.contains("19 rows, 3 shown; 16 more not shown"),
        "{capped}"
    );
    assert!(
        capped.contains("/api/v1/n…"),
        "cells cut to 10 characters:\n{capped}"
    );
    let whole = run_with(&[sql], None);
    assert!(
        !whole.contains("not shown") && whole.contains("/api/v1/namespaces/"),
        "{whole}"
    );
    let csv = run_with(&["--format", "csv", "--max-rows", "3", sql], None);
    assert_eq!(csv.lines().count(), 20, "CSV is never capped:\n{csv}");

    let script = "SELECT count(*) AS n FROM audit;\nSELECT 'a;b' AS s FROM requests LIMIT 1;\n";
    for args in [vec!["-"], vec!["-f", "-"]] {
        let out = run_with(&args, Some(script));
        assert!(out.contains("| 19 "), "{out}");
        assert!(out.contains("| a;b |"), "{out}");
    }
    let file = dir.path().join("q.sql");
    std::fs::write(&file, script).expect("write");
    let out = run_with(&["-f", file.to_str().expect("utf-8")], None);
    assert!(out.contains("| 19 ") && out.contains("| a;b |"), "{out}");

    // On a terminal (a pseudo-terminal from util-linux `script`), the cap applies by itself.
    let probe = std::process::Command::new("script")
        .arg("--version")
        .output();
    if probe.is_ok_and(|o| o.status.success()) {
        let long = "SELECT repeat('x', 100) AS long FROM audit LIMIT 1";
        let cmd = format!(
            "{} query --lake {} \"{long}\"",
            bin().display(),
            lake.display()
        );
        let out = std::process::Command::new("script")
            .args(["-qc", &cmd, "/dev/null"])
            .output()
            .expect("script");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("{}…", "x".repeat(59))), "{text}");
        assert!(!text.contains(&"x".repeat(61)), "{text}");
        let piped = run_with(&[long], None);
        assert!(
            piped.contains(&"x".repeat(100)),
            "not capped off a terminal:\n{piped}"
        );
    } else {
        eprintln!("skipped: the terminal case (no `script` command)");
    }
}

/// `--format line`: one `column = value` line per column, a blank line between rows, names
/// aligned; never capped.
#[test]
fn line_format_for_wide_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    ingest(&lake, &[], &[&fixture("identities.jsonl")]);
    let out = run(&[
        "query",
        "--lake",
        lake.to_str().expect("utf-8"),
        "--format",
        "line",
        "--max-rows",
        "1",
        "SELECT audit_id, verb FROM audit ORDER BY audit_id LIMIT 2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text, "audit_id = id-anon\n    verb = create\n\naudit_id = id-as\n    verb = get\n",
        "{text}"
    );
}
