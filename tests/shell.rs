//! `auditlake shell` under a real pseudo-terminal (`tests/shell_pty.py` types at it: multi-line
//! statements, tab completion, `.mode`, `.timer`, `.named`, `.output`, Ctrl-C during a query
//! that would run for hours and at a half-typed statement, `.quit`, and the history a second
//! shell recalls), and fed a script on standard input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::{bin, gen_file, ingest, sql};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn python() -> String {
    std::env::var("AUDITLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn lake(dir: &Path) -> std::path::PathBuf {
    let log = dir.join("audit.log");
    gen_file(&log, 2_000, 11);
    let lake = dir.join("lake");
    ingest(&lake, &[], &[&log]);
    lake
}

#[test]
fn shell_under_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
    let requests = sql(&lake, "SELECT count(*) AS n FROM requests")[1][0].clone();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let output = dir.path().join("seven.csv");
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shell_pty.py"))
        .arg(bin())
        .arg(&lake)
        .arg(&home)
        .arg(&requests)
        .arg(&output)
        .output()
        .expect("python3 (or AUDITLAKE_TEST_PYTHON)");
    assert!(
        out.status.success(),
        "the terminal session failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    // `.output` wrote the result in the table mode in force then (csv).
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "seven\n7\n");
    // One history file for the user, every entry written as it was entered.
    let history = std::fs::read_to_string(home.join(".local/state/auditlake/history")).unwrap();
    for entry in [
        ".tables",
        "SELECT 42 AS answer;",
        ".named proxy-summary --since 2000-01-01",
    ] {
        assert!(
            history.contains(entry),
            "history lacks {entry:?}:\n{history}"
        );
    }
    assert!(
        !history.contains("never"),
        "a cancelled half-typed statement is not history"
    );
}

#[test]
fn shell_reads_a_script_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
    let verbs = sql(&lake, "SELECT count(DISTINCT verb) FROM requests")[1][0].clone();
    let mut child = Command::new(bin())
        .args(["shell", "--history", "-", "--lake"])
        .arg(&lake)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b".mode csv\n\
              SELECT count(DISTINCT verb)\n  AS verbs FROM requests;\n\
              SELECT 'a;b' AS s; -- a comment\n\
              .schema requests\n\
              SELECT nope FROM requests;\n\
              .mode json\n\
              SELECT 3 AS three;\n\
              .frobnicate\n\
              .window --cluster nowhere\n\
              SELECT count(*) AS n FROM requests;\n\
              SELECT 'unfinished'\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("verbs\n{verbs}\n")), "{stdout}");
    assert!(stdout.contains("s\na;b\n"), "{stdout}");
    assert!(stdout.contains("actor_username"), "{stdout}");
    assert!(stdout.contains("{\"three\":3}"), "{stdout}");
    // The window applies to the statements after it: no requests in cluster `nowhere`.
    assert!(stdout.contains("{\"n\":0}"), "{stdout}");
    // Errors are reported with the script line they start on, and the script goes on.
    assert!(
        stderr.contains("error (line 6): ") && stderr.contains("nope"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error (line 9): unknown command `.frobnicate`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning (line 12): the last statement has no `;`"),
        "{stderr}"
    );
    assert!(!stdout.contains("unfinished"), "{stdout}");
}
