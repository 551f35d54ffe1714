//! Helpers shared by the integration tests: they drive the real binary.
#![allow(dead_code)]

pub mod kafka;
pub mod s3;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_auditlake"))
}

/// The real Falco events beside the checkout, a cross-check: `None`, with a line saying so,
/// when this clone has no `../shared`; a failure when `AUDITLAKE_REQUIRE_SHARED_FIXTURES` is set
/// (CI sets it).
pub fn falco_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/falco");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("AUDITLAKE_REQUIRE_SHARED_FIXTURES").is_none(),
        "AUDITLAKE_REQUIRE_SHARED_FIXTURES is set but {} is missing",
        dir.display()
    );
    eprintln!(
        "skipped: the Falco cross-check ({} is not there)",
        dir.display()
    );
    None
}

/// The `.json` files of a fixture directory, sorted.
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("fixtures at {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Run auditlake with `args`; panic with its output if it fails.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .env_remove("AUDITLAKE_LAKE")
        .output()
        .expect("spawn auditlake");
    assert!(
        out.status.success(),
        "auditlake {:?} failed: {}\n{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Write `events` generated events (seed `seed`) to `path` as JSON lines.
pub fn gen_file(path: &Path, events: u64, seed: u64) {
    run(&[
        "gen",
        "--events",
        &events.to_string(),
        "--seed",
        &seed.to_string(),
        "-o",
        &path.display().to_string(),
    ]);
}

/// The arguments of `auditlake ingest --lake LAKE --no-progress EXTRA FILES`.
pub fn ingest_args(lake: &Path, extra: &[&str], files: &[&Path]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "ingest".into(),
        "--lake".into(),
        lake.display().to_string(),
        "--no-progress".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(files.iter().map(|f| f.display().to_string()));
    args
}

pub fn ingest(lake: &Path, extra: &[&str], files: &[&Path]) -> Output {
    let args = ingest_args(lake, extra, files);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&refs)
}

/// Run `auditlake query --format csv` with `args` and return CSV rows
/// (header first).
pub fn query_csv(lake: &Path, args: &[&str]) -> Vec<Vec<String>> {
    parse_csv(&query_text(lake, args))
}

/// The CSV text `auditlake query --format csv` prints for `args`.
pub fn query_text(lake: &Path, args: &[&str]) -> String {
    let lake = lake.display().to_string();
    let mut all = vec!["query", "--lake", &lake, "--format", "csv"];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&run(&all).stdout).into_owned()
}

/// Run SQL through the CLI and return CSV rows (header first).
pub fn sql(lake: &Path, sql: &str) -> Vec<Vec<String>> {
    query_csv(lake, &[sql])
}

/// Run auditlake with `args`, require it to fail, and require `needle` in
/// its error output.
pub fn fails_with(args: &[&str], needle: &str) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("spawn auditlake");
    assert!(!out.status.success(), "auditlake {args:?} succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(needle),
        "auditlake {args:?}: `{needle}` not in {stderr}"
    );
}

/// A single value from a one-row, one-column query.
pub fn scalar(lake: &Path, q: &str) -> String {
    let rows = sql(lake, q);
    assert_eq!(rows.len(), 2, "{q}: expected one row, got {rows:?}");
    rows[1][0].clone()
}

/// Minimal CSV parsing (quoted fields with doubled quotes).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => in_quotes = false,
            ('"', false) => in_quotes = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Every dead letter in the lake's `_rejected/` files.
pub fn dead_letters(lake: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(lake.join("_rejected"))
        .expect("rejected dir")
        .flatten()
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .expect("read dead letters")
                .lines()
                .map(|l| serde_json::from_str(l).expect("dead letter is a JSON line"))
                .collect::<Vec<serde_json::Value>>()
        })
        .collect()
}

/// Committed Parquet files of a lake.
pub fn parquet_files(lake: &Path) -> Vec<PathBuf> {
    auditlake::sinks::lake::parquet_files(lake)
}

pub fn parquet_count(lake: &Path) -> usize {
    parquet_files(lake).len()
}

/// Send `signal` (e.g. "-TERM", "-KILL") to a child process.
pub fn signal(child: &std::process::Child, signal: &str) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill")
            .success(),
        "kill {signal} {pid} failed"
    );
}

/// GET over plain HTTP/1.0 (the metrics endpoints of `consume` and `ingest --follow`): the
/// whole response, status line first.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').expect("path");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
