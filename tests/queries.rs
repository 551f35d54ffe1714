//! Every named query runs on a fixture lake (hand-written identity
//! scenarios plus generated traffic). Each query's answer on the
//! hand-written events is checked, and full outputs are snapshotted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;
use std::path::Path;

fn named(lake: &Path, name: &str, params: &[&str]) -> Vec<Vec<String>> {
    let lake_s = lake.display().to_string();
    let mut args = vec![
        "query", "--lake", &lake_s, "--format", "csv", "--named", name,
    ];
    for p in params {
        if p.starts_with("--") || !p.contains('=') {
            args.push(p);
        } else {
            args.push("--param");
            args.push(p);
        }
    }
    parse_csv(&String::from_utf8_lossy(&run(&args).stdout))
}

fn col(rows: &[Vec<String>], name: &str) -> Vec<String> {
    let i = rows[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", rows[0]));
    rows[1..].iter().map(|r| r[i].clone()).collect()
}

/// A lake of the hand-written identity scenarios, in `dir`.
fn fixture_lake(dir: &Path) -> std::path::PathBuf {
    let lake = dir.join("lake");
    ingest(
        &lake,
        &["--cluster", "fixture"],
        &[&fixture("identities.jsonl")],
    );
    lake
}

#[test]
fn named_queries_answer_their_questions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = fixture_lake(dir.path());

    let r = named(&lake, "actor-via-proxy", &["actor=carol@example.com"]);
    assert_eq!(col(&r, "acted_as_username"), vec!["ops-bot"]);
    assert_eq!(col(&r, "resolution"), vec!["proxy_nested"]);

    let r = named(&lake, "who-acted-as-whom", &[]);
    let pairs: Vec<String> = r[1..]
        .iter()
        .map(|x| format!("{}>{}", x[2], x[3]))
        .collect();
    for want in [
        "kubecfg>superman",
        "carol@example.com>ops-bot",
        "mallory@example.com>ops-bot",
        "bob@example.com>bob@example.com",
    ] {
        assert!(
            pairs.contains(&want.to_string()),
            "{want} missing from {pairs:?}"
        );
    }

    let r = named(&lake, "privileged-impersonation", &[]);
    let mut actors = col(&r, "actor_username");
    actors.sort();
    assert_eq!(actors, vec!["carol@example.com", "kubecfg"]);

    let r = named(&lake, "secrets-by-humans", &[]);
    let actors = col(&r, "actor_username");
    for want in [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "mallory@example.com",
        "dave@example.com",
    ] {
        assert!(
            actors.contains(&want.to_string()),
            "{want} missing from {actors:?}"
        );
    }
    assert!(
        !actors.iter().any(|a| a.starts_with("system:")),
        "{actors:?}"
    );

    let r = named(&lake, "exec-attach-portforward", &[]);
    assert_eq!(
        r[1][..5].to_vec(),
        vec!["alice@example.com", "direct", "exec", "prod", "web-1"]
    );

    let r = named(&lake, "spoofed-malformed-claims", &[]);
    let mut status = col(&r, "claim_status");
    status.sort();
    assert_eq!(status, vec!["malformed", "spoofed"]);

    let r = named(&lake, "rbac-changes", &[]);
    assert_eq!(col(&r, "actor_username"), vec!["bob@example.com"]);
    assert_eq!(col(&r, "name"), vec!["pwn"]);

    let r = named(&lake, "tokens-minted", &[]);
    assert_eq!(col(&r, "issued_credential_id"), vec!["JTI=j1"]);
    assert_eq!(col(&r, "uses"), vec!["2"]);

    let r = named(&lake, "credential-usage", &["credential=JTI=j1"]);
    assert_eq!(col(&r, "pod_name"), vec!["ledger-1", "debug-shell"]);

    let r = named(&lake, "denied-per-actor", &[]);
    let denied: Vec<String> = r[1..]
        .iter()
        .map(|x| format!("{}:{}", x[0], x[3]))
        .collect();
    assert!(
        denied.contains(&"dave@example.com:1".to_string()),
        "{denied:?}"
    );
    assert!(
        denied.contains(&":1".to_string()),
        "failed authentication missing: {denied:?}"
    );

    let r = named(&lake, "anonymous-allowed", &[]);
    assert_eq!(
        col(&r, "request_uri"),
        vec!["/api/v1/namespaces/prod/secrets/db"]
    );

    let r = named(&lake, "token-unexpected-pod", &[]);
    assert_eq!(col(&r, "credential_id"), vec!["JTI=j1"]);
    assert_eq!(col(&r, "pods"), vec!["2"]);

    let r = named(&lake, "events-deleted", &[]);
    assert_eq!(col(&r, "name"), vec!["e1"]);

    let r = named(
        &lake,
        "first-seen-actors",
        &[
            "--since",
            "2025-01-01T11:00:00Z",
            "--until",
            "2025-01-01T12:00:00Z",
        ],
    );
    let mut actors = col(&r, "actor_username");
    actors.sort();
    // bob acted at 10:00 already (id-rbac), so only carol is new in the window.
    assert_eq!(actors, vec!["carol@example.com"]);

    let r = named(&lake, "actor-timeline", &["actor=ops-bot"]);
    assert_eq!(col(&r, "role"), vec!["acted_as", "acted_as", "acted_as"]);

    let r = named(&lake, "proxy-summary", &[]);
    assert_eq!(r[1], vec!["pinniped", "4", "2", "1", "0", "1"]);
}

#[test]
fn named_query_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("gen.log");
    run(&[
        "gen",
        "--events",
        "3000",
        "--seed",
        "21",
        "-o",
        &log.display().to_string(),
    ]);
    ingest(
        &lake,
        &["--cluster", "snap"],
        &[&fixture("identities.jsonl"), &log],
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for q in auditlake::query::named_queries() {
            // Subjects have no defaults; these are the values the
            // snapshots were taken with.
            let mut args = vec!["--named", q.name];
            for p in &q.params {
                match p.name.as_str() {
                    "actor" => args.extend(["--param", "actor=alice@example.com"]),
                    "credential" => args.extend([
                        "--param",
                        "credential=JTI=7e3f9a52-1b2c-4d5e-8f90-stolen000001",
                    ]),
                    _ => {}
                }
            }
            insta::assert_snapshot!(q.name, query_text(&lake, &args));
        }
    });
}

/// An event line for the Audit-ID tests.
fn event(id: &str, stage: &str, user: &str, verb: &str, name: &str, at: &str) -> String {
    serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": id, "stage": stage,
        "requestURI": format!("/api/v1/namespaces/prod/secrets/{name}"),
        "verb": verb,
        "user": {"username": user, "groups": ["devs"]},
        "sourceIPs": ["203.0.113.9"], "userAgent": "kubectl/v1.34.0",
        "objectRef": {"resource": "secrets", "namespace": "prod", "name": name, "apiVersion": "v1"},
        "requestReceivedTimestamp": at, "stageTimestamp": at,
        "responseStatus": {"metadata": {}, "code": 200},
        "annotations": {"authorization.k8s.io/decision": "allow"}
    })
    .to_string()
}

#[test]
fn a_reused_audit_id_hides_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let input = dir.path().join("reuse.jsonl");
    let alice = event(
        "shared-1",
        "ResponseComplete",
        "alice@example.com",
        "get",
        "s0",
        "2026-11-20T09:00:00.000001Z",
    );
    let lines = [
        event(
            "shared-1",
            "RequestReceived",
            "alice@example.com",
            "get",
            "s0",
            "2026-11-20T09:00:00.000001Z",
        ),
        alice.clone(),
        // The same event delivered twice (a webhook retry): one request.
        alice,
        // mallory deletes the secret sending alice's Audit-ID.
        event(
            "shared-1",
            "ResponseComplete",
            "mallory@example.com",
            "delete",
            "s0",
            "2026-11-20T09:05:00.000002Z",
        ),
        event(
            "solo-2",
            "ResponseComplete",
            "bob@example.com",
            "get",
            "s1",
            "2026-11-20T09:06:00Z",
        ),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").expect("write");
    ingest(&lake, &["--cluster", "reuse"], &[&input]);

    assert_eq!(
        scalar(
            &lake,
            "SELECT count(*) FROM audit WHERE audit_id = 'shared-1'"
        ),
        "4"
    );
    assert_eq!(
        scalar(
            &lake,
            "SELECT count(*) FROM audit_events WHERE audit_id = 'shared-1'"
        ),
        "3"
    );
    assert_eq!(
        scalar(
            &lake,
            "SELECT count(*) FROM requests WHERE audit_id = 'shared-1'"
        ),
        "2"
    );

    let r = named(&lake, "secrets-by-humans", &[]);
    let who: Vec<String> = r[1..]
        .iter()
        .map(|x| format!("{}:{}", x[2], x[6]))
        .collect();
    assert_eq!(
        who,
        vec![
            "alice@example.com:get",
            "mallory@example.com:delete",
            "bob@example.com:get"
        ],
        "{r:?}"
    );

    let r = named(&lake, "actor-timeline", &["actor=mallory@example.com"]);
    assert_eq!(col(&r, "verb"), vec!["delete"]);
    assert_eq!(col(&r, "name"), vec!["s0"]);

    let r = named(&lake, "audit-id-reuse", &[]);
    assert_eq!(col(&r, "audit_id"), vec!["shared-1", "shared-1"]);
    assert_eq!(
        col(&r, "actor_username"),
        vec!["alice@example.com", "mallory@example.com"]
    );
    assert_eq!(col(&r, "verb"), vec!["get", "delete"]);
}

#[test]
fn windows_restrict_every_relation_and_subjects_are_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = fixture_lake(dir.path());
    let lake_s = lake.display().to_string();
    // identities.jsonl spans 2025-01-01 10:00 to 12:00.
    let all = scalar(&lake, "SELECT count(*) FROM requests");
    let w = |args: &[&str], sql: &str| {
        let mut a = vec![sql];
        a.extend_from_slice(args);
        let rows = query_csv(&lake, &a);
        rows[1][0].clone()
    };
    let early = w(
        &["--until", "2025-01-01T11:00:00Z"],
        "SELECT count(*) FROM requests",
    );
    let late = w(
        &["--since", "2025-01-01T11:00:00Z"],
        "SELECT count(*) FROM requests",
    );
    let n = |s: &str| s.parse::<u64>().expect("count");
    assert!(n(&early) > 0 && n(&late) > 0, "{early} {late}");
    assert_eq!(n(&early) + n(&late), n(&all));
    for rel in ["audit", "audit_events"] {
        let sql = format!("SELECT count(*) FROM {rel}");
        let e = n(&w(&["--until", "2025-01-01T11:00:00Z"], &sql));
        let l = n(&w(&["--since", "2025-01-01T11:00:00Z"], &sql));
        assert_eq!(e + l, n(&scalar(&lake, &sql)), "{rel}");
    }
    assert_eq!(
        w(&["--cluster", "elsewhere"], "SELECT count(*) FROM audit"),
        "0"
    );
    assert_eq!(
        w(
            &["--until", "2025-01-01T11:00:00Z"],
            "SELECT count(*) FROM lake.requests"
        ),
        all,
        "lake.* is unrestricted"
    );
    // -v says what was skipped.
    let out = run(&[
        "query",
        "--lake",
        &lake_s,
        "-v",
        "--since",
        "2025-01-01T11:00:00Z",
        "SELECT count(*) FROM requests",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skipped by dt/hour or the window"), "{err}");
    assert!(
        !err.contains(", 0 skipped by dt/hour"),
        "nothing was pruned: {err}"
    );
    fails_with(
        &["query", "--lake", &lake_s, "--named", "actor-via-proxy"],
        "needs --param actor=VALUE",
    );
    fails_with(
        &["query", "--lake", &lake_s, "--named", "credential-usage"],
        "needs --param credential=VALUE",
    );
    fails_with(
        &[
            "query",
            "--lake",
            &lake_s,
            "--since",
            "yesterday",
            "SELECT 1",
        ],
        "--since \"yesterday\" is not a time",
    );
    fails_with(
        &[
            "query",
            "--lake",
            &lake_s,
            "--named",
            "first-seen-actors",
            "--param",
            "since=2025-01-01",
        ],
        "set with --since/--until",
    );
}

/// `--queries DIR` (or `AUDITLAKE_QUERIES`) adds the user's own named queries: run with their
/// parameters and window like the shipped ones, listed by `auditlake queries`; a file that
/// would replace a shipped query, or that uses a placeholder it does not declare, is refused
/// naming the file.
#[test]
fn users_own_named_queries_run_beside_the_shipped_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = fixture_lake(dir.path());
    let mine = dir.path().join("my-queries");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(
        mine.join("acted-as.sql"),
        "-- question: Which humans acted as this identity?\n-- param: as -- the identity acted as\nSELECT DISTINCT actor_username FROM requests WHERE acted_as_username = {{as}} AND actor_username IS NOT NULL AND request_received_at >= {{since}} ORDER BY 1\n",
    )
    .unwrap();
    std::fs::write(mine.join("notes.txt"), "not a query").unwrap();
    let lake_s = lake.display().to_string();
    let mine_s = mine.display().to_string();
    let out = run(&[
        "query",
        "--lake",
        &lake_s,
        "--queries",
        &mine_s,
        "--format",
        "csv",
        "--named",
        "acted-as",
        "--param",
        "as=ops-bot",
    ]);
    let rows = parse_csv(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        col(&rows, "actor_username"),
        vec!["carol@example.com", "mallory@example.com"],
        "the same pairs who-acted-as-whom finds"
    );
    // The environment variable, and the listing.
    let listed = std::process::Command::new(bin())
        .args(["queries"])
        .env("AUDITLAKE_QUERIES", &mine)
        .output()
        .expect("queries");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains(&format!("from {mine_s}:")), "{text}");
    assert!(
        text.contains("acted-as") && text.contains("Which humans acted as"),
        "{text}"
    );
    assert!(
        text.contains("actor-via-proxy"),
        "the shipped ones stay: {text}"
    );
    // Its parameter is required as a shipped query's is.
    fails_with(
        &[
            "query",
            "--lake",
            &lake_s,
            "--queries",
            &mine_s,
            "--named",
            "acted-as",
        ],
        "needs --param as=VALUE",
    );

    let shadow = dir.path().join("shadow");
    std::fs::create_dir(&shadow).unwrap();
    std::fs::write(
        shadow.join("secrets-by-humans.sql"),
        "-- question: nothing to see\nSELECT 1 WHERE false\n",
    )
    .unwrap();
    fails_with(
        &[
            "query",
            "--lake",
            &lake_s,
            "--queries",
            shadow.to_str().unwrap(),
            "--named",
            "secrets-by-humans",
        ],
        "secrets-by-humans.sql: `secrets-by-humans` is the name of a shipped query",
    );
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("typo.sql"),
        "-- question: typo\n-- param: actor -- who\nSELECT * FROM requests WHERE actor_username = {{actr}}\n",
    )
    .unwrap();
    fails_with(
        &["queries", "--queries", broken.to_str().unwrap()],
        "typo.sql: query `typo` uses {{actr}}",
    );
}
