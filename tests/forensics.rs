//! Forensics on the Delta lake (issue 21): tamper evidence (`lake verify` names a file
//! changed, deleted or added outside auditlake, and an edited or deleted log entry), and time
//! travel (`query --as-of`, `lake history`). Real binary, real files, real byte flips.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output};

/// `auditlake lake verify` without asserting success.
fn verify(lake: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .args(["lake", "verify", lake.to_str().unwrap()])
        .args(extra)
        .env_remove("AUDITLAKE_LAKE")
        .output()
        .expect("spawn")
}

/// The finding lines (`KIND<TAB>NAME<TAB>…`) of a verify run, as (kind, name).
fn findings(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("head\t"))
        .map(|l| {
            let mut it = l.split('\t');
            (
                it.next().unwrap_or_default().to_string(),
                it.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn head(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("head\t").map(str::to_string))
        .expect("a head line")
}

fn rel(lake: &Path, p: &Path) -> String {
    p.strip_prefix(lake)
        .expect("under the lake")
        .to_string_lossy()
        .replace('\\', "/")
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walk(from) {
        let dest = to.join(entry.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &dest).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn entry(lake: &Path, version: u64) -> std::path::PathBuf {
    lake.join("_delta_log").join(format!("{version:020}.json"))
}

/// A clean lake verifies and prints its head; one byte flipped in one file, one file deleted
/// and one stray file added are each reported by name, with exit code 1; an edited log
/// entry breaks the link of the next one; a deleted entry is named; an anchor catches a
/// rewritten head; a compaction's interrupted leftovers are not findings.
#[test]
fn verify_names_every_change_made_outside_auditlake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let logs: Vec<_> = (0..4)
        .map(|i| {
            let p = dir.path().join(format!("audit-{i}.log"));
            gen_file(&p, 1500, 21 + i);
            p
        })
        .collect();
    // Two files compacted into one, then two more: three live files, one replaced pair.
    ingest(&lake, &[], &[&logs[0]]);
    ingest(&lake, &[], &[&logs[1]]);
    run(&["compact", lake.to_str().unwrap(), "--min-files", "2"]);
    ingest(&lake, &[], &[&logs[2]]);
    ingest(&lake, &[], &[&logs[3]]);
    let clean = verify(&lake, &[]);
    assert!(clean.status.success(), "{clean:?}");
    assert!(findings(&clean).is_empty(), "{clean:?}");
    let anchor = head(&clean);

    let files = parquet_files(&lake);
    assert!(files.len() >= 5, "{files:?}");
    // Live files only (compaction replaced some; vacuum has not deleted them yet).
    let log_text: String = walk(&lake.join("_delta_log"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let live: Vec<_> = files
        .iter()
        .filter(|p| {
            let r = rel(&lake, p);
            log_text.contains(&format!("\"add\":{{\"path\":\"{r}\""))
                && !log_text.contains(&format!("\"remove\":{{\"path\":\"{r}\""))
        })
        .cloned()
        .collect();
    assert_eq!(live.len(), 3, "{live:?}");

    let tampered = dir.path().join("tampered");
    copy_dir(&lake, &tampered);
    let flipped = tampered.join(rel(&lake, &live[0]));
    let mut bytes = std::fs::read(&flipped).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&flipped, &bytes).unwrap();
    let deleted = tampered.join(rel(&lake, &live[1]));
    std::fs::remove_file(&deleted).unwrap();
    let stray = flipped.with_file_name("extra-events.parquet");
    std::fs::copy(&live[0], &stray).unwrap();
    let out = verify(&tampered, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let mut got = findings(&out);
    got.sort();
    let mut want = vec![
        ("changed".to_string(), rel(&tampered, &flipped)),
        ("missing".to_string(), rel(&tampered, &deleted)),
        ("stray".to_string(), rel(&tampered, &stray)),
    ];
    want.sort();
    assert_eq!(got, want, "{}", String::from_utf8_lossy(&out.stderr));

    // The log itself: version 1's entry edited (one row count) breaks version 2's link.
    let edited = dir.path().join("edited");
    copy_dir(&lake, &edited);
    let text = std::fs::read_to_string(entry(&edited, 1)).unwrap();
    let key = "numRecords\\\":";
    let at = text.find(key).expect("an add with its row count") + key.len();
    let mut changed = text.clone().into_bytes();
    changed[at] = if changed[at] == b'9' {
        b'8'
    } else {
        changed[at] + 1
    };
    let changed = String::from_utf8(changed).unwrap();
    assert_ne!(text, changed);
    std::fs::write(entry(&edited, 1), changed).unwrap();
    let out = verify(&edited, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        findings(&out),
        vec![(
            "broken-link".to_string(),
            "_delta_log/00000000000000000002.json".to_string()
        )],
        "{out:?}"
    );
    // An entry deleted from the middle of the log.
    std::fs::copy(entry(&lake, 1), entry(&edited, 1)).unwrap();
    std::fs::remove_file(entry(&edited, 2)).unwrap();
    let out = verify(&edited, &[]);
    assert_eq!(out.status.code(), Some(1));
    let got = findings(&out);
    assert!(
        got.contains(&(
            "missing-entry".to_string(),
            "_delta_log/00000000000000000002.json".to_string()
        )),
        "{out:?}"
    );
    // Readers refuse a log with a gap, and verify says so rather than failing itself.
    assert!(got.iter().any(|(k, _)| k == "unloadable"), "{got:?}");

    // The head has no successor: only the anchor catches a rewrite of it.
    let rewritten = dir.path().join("rewritten");
    copy_dir(&lake, &rewritten);
    let (v, _) = anchor.split_once(':').unwrap();
    let v: u64 = v.parse().unwrap();
    let text = std::fs::read_to_string(entry(&rewritten, v)).unwrap();
    std::fs::write(
        entry(&rewritten, v),
        text.replacen("\"WRITE\"", "\"MERGE\"", 1),
    )
    .unwrap();
    assert!(verify(&rewritten, &[]).status.success(), "unanchored");
    let out = verify(&rewritten, &["--anchor", &anchor]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(findings(&out)[0].0, "anchor", "{out:?}");
    assert!(verify(&lake, &["--anchor", &anchor]).status.success());

    // A compaction that died between placing its outputs and committing them leaves files
    // its intent marker names: notes, not findings.
    let left = live[0].with_file_name("compacted-v99-1-000.parquet");
    std::fs::copy(&live[0], &left).unwrap();
    std::fs::write(
        lake.join("_state/compact-1-0.intent"),
        format!("{{\"files\":[\"{}\"]}}", rel(&lake, &left)),
    )
    .unwrap();
    let out = verify(&lake, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("left by an interrupted commit"));
    // Vacuum keeps them while the commit may still be under way (an hour, whatever
    // --min-age), then deletes both.
    run(&["lake", "vacuum", lake.to_str().unwrap(), "--min-age", "0s"]);
    assert!(left.exists(), "a pending commit's file is kept for an hour");
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for p in [left.clone(), lake.join("_state/compact-1-0.intent")] {
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    run(&["lake", "vacuum", lake.to_str().unwrap(), "--min-age", "0s"]);
    assert!(!left.exists());
    assert!(!lake.join("_state/compact-1-0.intent").exists());
    assert!(verify(&lake, &[]).status.success());
}

/// `query --as-of` answers from the table as it stood at a version or a time: before a
/// second ingest, before a retention; `lake history` lists the commits with their writers,
/// rows and positions; a version whose files vacuum deleted is refused by name.
#[test]
fn time_travel_answers_as_the_lake_stood() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    gen_file(&a, 3000, 31);
    gen_file(&b, 2000, 32);
    ingest(&lake, &[], &[&a]);
    let after_a = scalar(&lake, "SELECT count(*) FROM audit");
    std::thread::sleep(std::time::Duration::from_millis(20));
    ingest(&lake, &[], &[&b]);
    let after_b = scalar(&lake, "SELECT count(*) FROM audit");
    assert_ne!(after_a, after_b);

    let history =
        String::from_utf8_lossy(&run(&["lake", "history", lake.to_str().unwrap()]).stdout)
            .to_string();
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 3, "create and two writes: {history}");
    assert_eq!(rows[1][2], "WRITE");
    assert!(rows[1][3].starts_with("ingest@"), "{history}");
    assert_eq!(rows[1][6], "3000");
    assert!(
        rows[1][7].ends_with("=3000"),
        "the file source's position: {history}"
    );
    assert_eq!(rows[2][6], "2000");

    let as_of = |at: &str| -> String {
        let out = run(&[
            "query",
            "--lake",
            lake.to_str().unwrap(),
            "--as-of",
            at,
            "--format",
            "csv",
            "SELECT count(*) FROM audit",
        ]);
        parse_csv(&String::from_utf8_lossy(&out.stdout))[1][0].clone()
    };
    assert_eq!(as_of("1"), after_a);
    assert_eq!(as_of("2"), after_b);
    // By time: each commit's own time answers as that version.
    assert_eq!(as_of(rows[1][1]), after_a);
    assert_eq!(as_of(rows[2][1]), after_b);

    // Everything goes out of the table; the past still answers until vacuum.
    run(&[
        "retention",
        lake.to_str().unwrap(),
        "--keep",
        "2100-01-01T00:00:00Z",
        "--min-age",
        "1h",
    ]);
    assert_eq!(scalar(&lake, "SELECT count(*) FROM audit"), "0");
    assert_eq!(as_of("2"), after_b);
    run(&["lake", "vacuum", lake.to_str().unwrap(), "--min-age", "0s"]);
    fails_with(
        &[
            "query",
            "--lake",
            lake.to_str().unwrap(),
            "--as-of",
            "2",
            "SELECT count(*) FROM audit",
        ],
        "which `lake vacuum` has deleted",
    );
    fails_with(
        &[
            "query",
            "--lake",
            lake.to_str().unwrap(),
            "--as-of",
            "99",
            "SELECT 1",
        ],
        "newer than the lake's newest",
    );
    // The chain survived every kind of commit.
    assert!(verify(&lake, &[]).status.success());
}
