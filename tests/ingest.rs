//! Fixture-driven tests of `auditlake ingest` and `auditlake query`,
//! through the real binary, real files and a real lake.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;
use std::path::Path;

fn row_for(lake: &Path, audit_id: &str, cols: &str) -> Vec<String> {
    let rows = sql(
        lake,
        &format!("SELECT {cols} FROM requests WHERE audit_id = '{audit_id}'"),
    );
    assert_eq!(rows.len(), 2, "{audit_id}: {rows:?}");
    rows[1].clone()
}

#[test]
fn identities_fixture_resolves_every_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let out = ingest(&lake, &["--cluster", "c1"], &[&fixture("identities.jsonl")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("19 events"), "{stderr}");
    assert!(stderr.contains("4 rejected"), "{stderr}");

    let cols = "resolution, claim_status, actor_username, acted_as_username, COALESCE(proxy_profile, '-'), COALESCE(actor_kind, '-')";
    let p = "pinniped";
    let table: &[(&str, [&str; 6])] = &[
        (
            "id-direct",
            [
                "direct",
                "none",
                "alice@example.com",
                "alice@example.com",
                "-",
                "user",
            ],
        ),
        (
            "id-as",
            ["impersonation", "none", "kubecfg", "superman", "-", "user"],
        ),
        (
            "id-proxy",
            [
                "proxy",
                "none",
                "bob@example.com",
                "bob@example.com",
                p,
                "user",
            ],
        ),
        (
            "id-nested",
            [
                "proxy_nested",
                "trusted",
                "carol@example.com",
                "ops-bot",
                p,
                "user",
            ],
        ),
        (
            "id-spoof",
            [
                "impersonation",
                "spoofed",
                "mallory@example.com",
                "ops-bot",
                "-",
                "user",
            ],
        ),
        (
            "id-sa",
            [
                "direct",
                "none",
                "system:serviceaccount:payments:ledger",
                "system:serviceaccount:payments:ledger",
                "-",
                "serviceaccount",
            ],
        ),
        ("id-failed", ["direct", "none", "", "", "-", "-"]),
        (
            "id-anon",
            [
                "direct",
                "none",
                "system:anonymous",
                "system:anonymous",
                "-",
                "anonymous",
            ],
        ),
        (
            "id-constrained",
            [
                "impersonation",
                "none",
                "system:serviceaccount:default:my-controller",
                "jane.doe@example.com",
                "-",
                "serviceaccount",
            ],
        ),
    ];
    for (id, want) in table {
        assert_eq!(row_for(&lake, id, cols), want.to_vec(), "{id}");
    }
    // Malformed claim: no actor, evidence kept.
    assert_eq!(
        row_for(
            &lake,
            "id-malformed",
            "resolution, claim_status, actor_username IS NULL, original_claim_raw"
        ),
        vec!["proxy_claim_malformed", "malformed", "true", "{not json"]
    );
    // Nested claim: original identity and the actor's own credential, not the proxy's.
    assert_eq!(
        row_for(&lake, "id-nested", "original_uid, credential_id, authn_credential_id, array_to_string(original_groups, ',')"),
        vec!["c-1", "X509SHA256=cc", "JTI=proxy-jti", "admins"]
    );
    // Service-account provenance.
    assert_eq!(
        row_for(&lake, "id-sa", "actor_sa_namespace, actor_sa_name, credential_id, pod_name, pod_uid, node_name, node_uid"),
        vec!["payments", "ledger", "JTI=j1", "ledger-1", "pu1", "worker-1", "nu1"]
    );
    // Unknown top-level fields are kept.
    assert_eq!(
        row_for(&lake, "id-constrained", "event_extra_fields"),
        vec![r#"{"authenticationMetadata":{"impersonationConstraint":"impersonate:user-info"}}"#]
    );
    // Relations: the duplicate delivery is in `audit` but not in `audit_events`.
    assert_eq!(scalar(&lake, "SELECT COUNT(*) FROM audit"), "19");
    assert_eq!(scalar(&lake, "SELECT COUNT(*) FROM audit_events"), "18");
    // id-nested has two stages; requests keeps one row with the impersonation identity.
    assert_eq!(scalar(&lake, "SELECT COUNT(*) FROM requests"), "17");
    // Partition pruning columns come from the path.
    assert_eq!(
        scalar(
            &lake,
            "SELECT COUNT(*) FROM audit WHERE dt = '2025-01-01' AND hour = '11'"
        ),
        "3"
    );
    // Dead letters keep text, reason and position.
    let rejected = dead_letters(&lake);
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    let reasons: Vec<String> = rejected
        .iter()
        .map(|r| format!("{}:{}", r["position"], r["reason"].as_str().unwrap_or("")))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("19:") && r.contains("invalid audit event")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("20:") && r.contains("not JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("21:") && r.contains("legacy")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("22:") && r.contains("kind `Pod`")),
        "{reasons:?}"
    );
    assert!(rejected.iter().all(|r| r["source"]
        .as_str()
        .unwrap_or("")
        .ends_with("identities.jsonl")));
}

#[test]
fn ingest_is_idempotent_and_reads_gzip_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    run(&[
        "gen",
        "--events",
        "5000",
        "--seed",
        "3",
        "-o",
        &log.display().to_string(),
    ]);
    ingest(&lake, &["--segment-rows", "1000"], &[&log]);
    let count = || scalar(&lake, "SELECT COUNT(*) FROM audit");
    assert_eq!(count(), "5000");
    // Same file again: nothing new.
    let out = ingest(&lake, &[], &[&log]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 events"));
    assert_eq!(count(), "5000");
    // The rotated, gzip-compressed backup of the same log is the same source.
    let text = std::fs::read(&log).expect("read");
    let gz = dir.path().join("audit-2026-11-20T08-00-00.000.log.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &text).expect("gz");
    std::fs::write(&gz, enc.finish().expect("gz")).expect("write");
    ingest(&lake, &[], &[&gz]);
    assert_eq!(count(), "5000");
    // The log grew: only the new lines are ingested.
    let more = dir.path().join("more.log");
    run(&[
        "gen",
        "--events",
        "6000",
        "--seed",
        "3",
        "-o",
        &more.display().to_string(),
    ]);
    std::fs::copy(&more, &log).expect("grow");
    let out = ingest(&lake, &[], &[&log]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("resumed after line 5000"));
    assert_eq!(count(), "6000");
    assert_eq!(
        scalar(&lake, "SELECT COUNT(DISTINCT source) FROM audit"),
        "6000"
    );
    // A different cluster is a different source.
    ingest(&lake, &["--cluster", "other"], &[&log]);
    assert_eq!(
        scalar(&lake, "SELECT COUNT(*) FROM audit WHERE cluster = 'other'"),
        "6000"
    );
}

#[test]
fn gen_dash_writes_standard_output_like_ingest_reads_it() {
    // `-` is standard output for `gen` as it is standard input for
    // `ingest`; it once created a file named `-` in the working directory.
    let dir = tempfile::tempdir().expect("tempdir");
    let gen = |extra: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(["gen", "--events", "50", "--seed", "9"])
            .args(extra)
            .current_dir(dir.path())
            .output()
            .expect("spawn auditlake");
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };
    let default = gen(&[]);
    assert_eq!(String::from_utf8_lossy(&default).lines().count(), 50);
    assert_eq!(gen(&["-o", "-"]), default);
    assert!(!dir.path().join("-").exists(), "gen -o - created a file");
}

#[test]
fn shape_fixtures_ingest_without_rejections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let files = json_files(&fixture("shapes"));
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = ingest(&lake, &[], &refs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("7 events, 7 rows written, 0 rejected"),
        "{stderr}"
    );
    // v1beta1: microsecond times beside its second-precision `timestamp`, and the v1beta1-only
    // members kept in event_extra_fields.
    let rows = sql(
        &lake,
        "SELECT actor_username, actor_kind, CAST(request_received_at AS VARCHAR) AS received, \
         event_extra_fields IS NOT NULL FROM audit WHERE verb = 'create' ORDER BY received",
    );
    assert_eq!(
        rows[1],
        vec![
            "system:anonymous",
            "anonymous",
            "2019-03-04T05:06:07.123456Z",
            "true"
        ]
    );
    // Members in any order decode the same.
    assert_eq!(rows[2][0], "carol@example.org");
    // requestObject kept as JSON text.
    let obj = scalar(
        &lake,
        "SELECT request_object FROM audit WHERE resource = 'namespaces'",
    );
    let v: serde_json::Value = serde_json::from_str(&obj).expect("request_object is JSON");
    assert_eq!(v["metadata"]["name"], "scratch");
    // Three stages of one watch: one request; the 403 is kept with its code.
    assert_eq!(
        scalar(
            &lake,
            "SELECT count(*) FROM requests WHERE audit_id = '7f0c1a52-shape-0003'"
        ),
        "1"
    );
    assert_eq!(
        scalar(
            &lake,
            "SELECT CAST(response_code AS VARCHAR) FROM audit WHERE audit_id = '7f0c1a52-shape-0005'"
        ),
        "403"
    );
}

#[test]
fn falco_fixtures_ingest_without_rejections() {
    let Some(falco) = falco_dir() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let files = json_files(&falco);
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = ingest(&lake, &[], &refs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("10 events, 10 rows written, 0 rejected"),
        "{stderr}"
    );
    // v1beta1 second-precision timestamps and the v1beta1-only members.
    let rows = sql(
        &lake,
        "SELECT actor_username, actor_kind, CAST(request_received_at AS VARCHAR), event_extra_fields IS NOT NULL \
         FROM audit WHERE verb = 'create' AND resource = 'namespaces'",
    );
    assert_eq!(
        rows[1],
        vec![
            "system:anonymous",
            "anonymous",
            "2018-10-25T13:58:49.730588Z",
            "true"
        ]
    );
    let obj = scalar(
        &lake,
        "SELECT request_object FROM audit WHERE resource = 'namespaces'",
    );
    let v: serde_json::Value = serde_json::from_str(&obj).expect("request_object is JSON");
    assert_eq!(v["metadata"]["name"], "foo");
}

#[test]
fn documents_stdin_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    // A pretty-printed EventList document.
    let list = dir.path().join("batch.json");
    let text = std::fs::read_to_string(fixture("identities.jsonl")).expect("fixture");
    let items: Vec<serde_json::Value> = text
        .lines()
        .take(3)
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let doc =
        serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items});
    std::fs::write(&list, serde_json::to_string_pretty(&doc).expect("json")).expect("write");
    ingest(&lake, &[], &[&list]);
    assert_eq!(scalar(&lake, "SELECT COUNT(*) FROM audit"), "3");

    // Standard input.
    let mut child = std::process::Command::new(bin())
        .args([
            "ingest",
            "--lake",
            &lake.display().to_string(),
            "--cluster",
            "stdin",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    assert!(child.wait().expect("wait").success());
    assert_eq!(
        scalar(&lake, "SELECT COUNT(*) FROM audit WHERE cluster = 'stdin'"),
        "19"
    );

    // A missing file names the file and fails.
    let lake_s = lake.display().to_string();
    fails_with(
        &["ingest", "--lake", &lake_s, "/nonexistent/audit.log"],
        "/nonexistent/audit.log",
    );

    // Bad profiles are explained.
    let bad = dir.path().join("p.toml");
    std::fs::write(&bad, "[[profile]]\nname='x'\nclaim='weird'\n").expect("write");
    let (bad_s, list_s) = (bad.display().to_string(), list.display().to_string());
    fails_with(
        &["ingest", "--lake", &lake_s, "--profiles", &bad_s, &list_s],
        "unknown claim `weird`",
    );
}

#[test]
fn custom_profiles_change_who_is_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    // Pinniped installed in another namespace: the default profile does not
    // trust it, a custom one does.
    let text = std::fs::read_to_string(fixture("identities.jsonl"))
        .expect("fixture")
        .replace(
            "pinniped-concierge:pinniped-concierge-impersonation-proxy",
            "auth:pinniped-proxy",
        );
    let input = dir.path().join("moved.jsonl");
    std::fs::write(&input, text).expect("write");
    ingest(&lake, &["--cluster", "default-profiles"], &[&input]);
    let profiles = dir.path().join("p.toml");
    std::fs::write(
        &profiles,
        "[[profile]]\nname = \"pinniped\"\nproxy_usernames = [\"system:serviceaccount:auth:pinniped-proxy\"]\nclaim = \"userinfo_json\"\nclaim_key = \"original-user-info.impersonation-proxy.concierge.pinniped.dev\"\n",
    )
    .expect("write");
    ingest(
        &lake,
        &[
            "--cluster",
            "custom",
            "--profiles",
            &profiles.display().to_string(),
        ],
        &[&input],
    );
    let rows = sql(
        &lake,
        "SELECT cluster, resolution, claim_status, actor_username FROM requests WHERE audit_id = 'id-nested' ORDER BY cluster",
    );
    assert_eq!(
        rows[1],
        vec!["custom", "proxy_nested", "trusted", "carol@example.com"]
    );
    assert_eq!(
        rows[2],
        vec![
            "default-profiles",
            "impersonation",
            "spoofed",
            "system:serviceaccount:auth:pinniped-proxy"
        ]
    );
}

#[test]
fn unreadable_inputs_do_not_stop_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let missing = dir.path().join("missing.log");
    let sub = dir.path().join("logs");
    std::fs::create_dir(&sub).expect("mkdir");
    let lake_s = lake.display().to_string();
    let out = std::process::Command::new(bin())
        .args(["ingest", "--lake", &lake_s, "--no-progress"])
        .arg(&missing)
        .arg(&sub)
        .arg(fixture("identities.jsonl"))
        .output()
        .expect("spawn auditlake");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("2 of 3 input files could not be read"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot open") && stderr.contains("missing.log"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is a directory; pass the files in it"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(".gz"),
        "a directory is not a damaged backup: {stderr}"
    );
    // The readable file after them was ingested.
    assert_eq!(scalar(&lake, "SELECT count(*) FROM audit"), "19");
}
