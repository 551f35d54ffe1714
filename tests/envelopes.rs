//! Managed-cluster envelopes end to end: each fixture in `tests/fixtures/envelopes/` (written
//! by its `make.py` from the documented shapes) is ingested by the real binary, and its rows
//! must resolve exactly as the same events ingested plainly; broken envelopes are
//! dead-lettered with their reason; `gen --format` round-trips through `ingest`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn envelope(name: &str) -> PathBuf {
    fixture(&format!("envelopes/{name}"))
}

/// What the resolver and the decoder made of each event, envelope columns aside.
const ROW: &str = "SELECT audit_id, stage, verb, request_uri, resource, subresource, namespace, name, \
     response_code, decision, authn_username, impersonated_username, actor_username, actor_uid, \
     actor_kind, array_to_string(actor_groups, ',') AS actor_groups, acted_as_username, \
     proxy_profile, proxy_username, original_username, original_claim_raw, resolution, claim_status, \
     credential_id, pod_name, node_name, impersonation_constraint, request_received_at, stage_at \
     FROM audit ORDER BY audit_id, stage, stage_at";

fn lake_of(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let lake = dir.join(name);
    ingest(&lake, extra, &[&envelope(name)]);
    lake
}

#[test]
fn eks_and_aks_envelopes_resolve_as_the_plain_events() {
    let dir = tempfile::tempdir().unwrap();
    let plain = lake_of(dir.path(), "plain.jsonl", &[]);
    let want = sql(&plain, ROW);
    assert_eq!(want.len(), 19, "18 events and a header");
    for (name, cluster, envelope_log) in [
        ("eks-subscription.json", "prod-eu", "/aws/eks/prod-eu/cluster"),
        ("eks-kinesis.b64", "prod-eu", "/aws/eks/prod-eu/cluster"),
        ("eks-firehose-raw.gz", "prod-eu", "/aws/eks/prod-eu/cluster"),
        ("eks-firehose-extracted.json", "default", ""),
        ("eks-export.log", "default", ""),
        ("aks-eventhub.json", "prod-weu", "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-WEU"),
        ("aks-blob-PT1H.json", "prod-weu", "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-WEU"),
    ] {
        let lake = lake_of(dir.path(), name, &[]);
        assert_eq!(sql(&lake, ROW), want, "{name}: rows differ from the plain events'");
        let clusters = sql(
            &lake,
            "SELECT DISTINCT cluster, coalesce(envelope_log, '') FROM audit",
        );
        assert_eq!(
            clusters[1..],
            [vec![cluster.to_string(), envelope_log.to_string()]],
            "{name}"
        );
    }
    // The envelope says where each event came from.
    let lake = dir.path().join("eks-subscription.json");
    let r = sql(
        &lake,
        "SELECT envelope, envelope_stream, count(DISTINCT envelope_id) FROM audit GROUP BY 1, 2",
    );
    assert_eq!(
        r[1],
        [
            "eks",
            "kube-apiserver-audit-71976ca11bea5d3083393f7d32dab75b",
            "18"
        ]
    );
    let lake = dir.path().join("aks-eventhub.json");
    let r = sql(
        &lake,
        "SELECT DISTINCT envelope, envelope_stream FROM audit",
    );
    assert_eq!(r[1], ["aks", "kube-apiserver-5d9f7c8b6-abcde"]);
}

#[test]
fn a_given_cluster_wins_over_the_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_of(dir.path(), "eks-subscription.json", &["--cluster", "mine"]);
    assert_eq!(
        scalar(&lake, "SELECT string_agg(DISTINCT cluster, ',') FROM audit"),
        "mine"
    );
}

#[test]
fn gke_entries_map_onto_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let plain = lake_of(dir.path(), "plain.jsonl", &[]);
    let gke = lake_of(dir.path(), "gke-logentries.json", &[]);
    // One entry per request: its last stage.
    let cols =
        "audit_id, verb, resource, subresource, namespace, name, api_group, authn_username, \
                impersonated_username, decision, request_received_at";
    let want = sql(
        &plain,
        &format!("SELECT {cols} FROM audit WHERE stage = 'ResponseComplete' ORDER BY audit_id"),
    );
    let got = sql(&gke, &format!("SELECT {cols} FROM audit ORDER BY audit_id"));
    assert_eq!(got, want);
    assert_eq!(
        scalar(&gke, "SELECT string_agg(DISTINCT cluster || ' ' || envelope || ' ' || envelope_stream, ',') FROM audit"),
        "prod-gke gke europe-west1"
    );
    // Status codes come back from google.rpc codes: 403 and 401 exactly, success as 200.
    let codes = sql(
        &gke,
        "SELECT DISTINCT audit_id, response_code FROM audit WHERE audit_id IN ('id-denied', 'id-failed', 'id-exec', 'id-direct') ORDER BY 1",
    );
    assert_eq!(
        codes[1..],
        [
            vec!["id-denied".to_string(), "403".into()],
            vec!["id-direct".into(), "200".into()],
            vec!["id-exec".into(), "200".into()],
            vec!["id-failed".into(), "401".into()],
        ]
    );
    // Where the plain event needs no extras, the actor is the same (a forged claim was never
    // believed anyway); Pinniped's nested claim lives in impersonatedUser.extra, which GKE's
    // form drops, so there the actor is the impersonated user.
    let actors = |lake: &Path| {
        sql(
            lake,
            "SELECT audit_id, actor_username FROM audit WHERE stage = 'ResponseComplete' ORDER BY 1",
        )
    };
    let (p, g) = (actors(&plain), actors(&gke));
    for (pr, gr) in p[1..].iter().zip(&g[1..]) {
        assert_eq!(pr[0], gr[0]);
        match pr[0].as_str() {
            "id-nested" | "id-malformed" => {
                assert_eq!(gr[1], "ops-bot", "{}", gr[0]);
            }
            _ => assert_eq!(pr, gr),
        }
    }
}

#[test]
fn broken_envelopes_are_dead_lettered_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_of(dir.path(), "malformed.jsonl", &[]);
    // The one good event inside a broken payload is kept.
    assert_eq!(scalar(&lake, "SELECT count(*) FROM audit"), "1");
    let mut reasons: Vec<(u64, String)> = dead_letters(&lake)
        .iter()
        .map(|d| {
            (
                d["position"].as_u64().unwrap(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    reasons.sort();
    let want = [
        (1, "EKS CloudWatch Logs logEvents[0]: not JSON"),
        (2, "invalid EKS CloudWatch Logs envelope: no logEvents"),
        (3, "messageType `SOMETHING_ELSE`"),
        (4, "invalid AKS resource-log envelope"),
        (5, "AKS resource-log records[0]: has no properties.log"),
        (
            6,
            "GKE Cloud Audit Logs entry: invalid timestamp `not a time`",
        ),
        (7, "not base64"),
        (8, "not valid gzip"),
    ];
    assert_eq!(reasons.len(), want.len(), "{reasons:?}");
    for ((pos, reason), (wpos, needle)) in reasons.iter().zip(want) {
        assert_eq!(*pos, wpos);
        assert!(
            reason.contains(needle),
            "line {pos}: `{needle}` not in `{reason}`"
        );
    }
}

#[test]
fn a_named_format_opens_only_its_own_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    // An AKS message read as EKS is neither an EKS envelope nor an event.
    let lake = lake_of(dir.path(), "aks-eventhub.json", &["--format", "eks"]);
    assert_eq!(scalar(&lake, "SELECT count(*) FROM audit"), "0");
    assert_eq!(dead_letters(&lake).len(), 2);
    // Plain events pass whatever the cloud.
    let lake = lake_of(dir.path(), "plain.jsonl", &["--format", "gke"]);
    assert_eq!(scalar(&lake, "SELECT count(*) FROM audit"), "18");
    // `kubernetes` opens no envelope.
    let lake = lake_of(
        dir.path(),
        "eks-subscription.json",
        &["--format", "kubernetes"],
    );
    assert_eq!(scalar(&lake, "SELECT count(*) FROM audit"), "0");
}

#[test]
fn generated_envelopes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for format in ["jsonl", "eks", "aks", "gke"] {
        let file = dir.path().join(format!("g.{format}"));
        run(&[
            "gen",
            "--events",
            "3000",
            "--seed",
            "9",
            "--format",
            format,
            "--batch",
            "100",
            "-o",
            &file.display().to_string(),
        ]);
        let lake = dir.path().join(format!("lake-{format}"));
        ingest(&lake, &[], &[&file]);
        rows.push((
            format,
            sql(
                &lake,
                "SELECT cluster, count(*), count(DISTINCT audit_id), \
                 sum(CASE WHEN claim_status = 'trusted' THEN 1 ELSE 0 END) FROM audit GROUP BY 1",
            ),
        ));
    }
    let events = |i: usize| rows[i].1[1][1].clone();
    assert_eq!(rows[0].1[1][0], "default");
    assert_eq!(rows[1].1[1][0], "demo-eks");
    assert_eq!(rows[2].1[1][0], "demo-aks");
    assert_eq!(rows[3].1[1][0], "demo-gke");
    assert_eq!(events(0), "3000");
    assert_eq!(events(1), "3000");
    assert_eq!(events(2), "3000");
    // GKE keeps each request's last stage: every request, fewer rows, no claims.
    assert_eq!(rows[3].1[1][2], rows[0].1[1][2]);
    assert!(rows[3].1[1][1].parse::<u64>().unwrap() < 3000);
    assert_eq!(rows[3].1[1][3], "0");
    assert_ne!(rows[0].1[1][3], "0");
}

#[test]
fn constrained_impersonation_is_a_column() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_of(dir.path(), "plain.jsonl", &[]);
    let r = sql(
        &lake,
        "SELECT audit_id, impersonation_constraint FROM audit WHERE impersonation_constraint IS NOT NULL",
    );
    assert_eq!(
        r[1..],
        [vec![
            "id-constrained".to_string(),
            "impersonate:user-info".into()
        ]]
    );
    let r = query_csv(&lake, &["--named", "who-acted-as-whom"]);
    let at = r[0]
        .iter()
        .position(|c| c == "impersonation_constraint")
        .unwrap();
    assert!(r.iter().any(|row| row[at] == "impersonate:user-info"));
}
