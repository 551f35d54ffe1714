//! Shell completions and the man page come from the same definitions as `--help`: every command
//! is in them, and the bash script is valid bash.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;

const COMMANDS: &[&str] = &[
    "demo", "gen", "ingest", "query", "explain", "serve", "consume", "produce", "loadgen",
    "queries", "schema", "verify",
];

#[test]
fn completions_name_every_command() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef auditlake"),
        ("fish", "complete -c auditlake"),
    ] {
        let out = run(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        for c in COMMANDS {
            assert!(text.contains(c), "{shell}: {c} missing");
        }
        assert!(text.contains("--since"), "{shell}: flags missing");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("auditlake.bash");
    std::fs::write(&script, run(&["completions", "bash"]).stdout).expect("write");
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn the_man_page_has_every_command() {
    let out = run(&["man"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(".ie") || text.contains(".TH auditlake"),
        "{}",
        &text[..200.min(text.len())]
    );
    for c in COMMANDS {
        assert!(text.contains(&format!(".TH auditlake-{c}")), "{c} missing");
    }
    assert!(
        text.contains("AUDITLAKE_LAKE"),
        "environment variables missing"
    );
}
