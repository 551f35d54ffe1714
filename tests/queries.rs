//! Every named query runs on a fixture lake (hand-written identity
//! scenarios plus generated traffic). Each query's answer on the
//! hand-written events is checked, and full outputs are snapshotted.

mod common;
use common::*;
use std::path::Path;

fn named(lake: &Path, name: &str, params: &[&str]) -> Vec<Vec<String>> {
    let lake_s = lake.display().to_string();
    let mut args = vec![
        "query", "--lake", &lake_s, "--format", "csv", "--named", name,
    ];
    for p in params {
        args.push("--param");
        args.push(p);
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

#[test]
fn named_queries_answer_their_questions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    ingest(
        &lake,
        &["--cluster", "fixture"],
        &[&fixture("identities.jsonl")],
    );

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
        &["since=2025-01-01T11:00:00Z", "until=2025-01-01T12:00:00Z"],
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
            insta::assert_snapshot!(q.name, query_text(&lake, &["--named", q.name]));
        }
    });
}
