//! `auditlake explain` on a lake ingested from the identity fixtures: each resolution kind is
//! put into words from the stored row, stages are listed, and an unknown ID is a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;

fn explain(lake: &std::path::Path, id: &str) -> std::process::Output {
    std::process::Command::new(bin())
        .args(["explain", "--lake"])
        .arg(lake)
        .arg(id)
        .output()
        .expect("spawn auditlake")
}

#[test]
fn explain_puts_each_resolution_into_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    ingest(&lake, &["--cluster", "c1"], &[&fixture("identities.jsonl")]);
    let pinniped =
        "system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy";
    let cases: &[(&str, &[&str])] = &[
        (
            "id-direct",
            &["alice@example.com", "made this request directly"],
        ),
        (
            "id-as",
            &["kubecfg impersonated superman", "kubecfg is the actor"],
        ),
        (
            "id-proxy",
            &["bob@example.com reached the cluster through the pinniped proxy"],
        ),
        (
            "id-nested",
            &[
                "connected through the pinniped proxy",
                "matches profile `pinniped`",
                "RequestReceived at",
                "ResponseComplete at",
            ],
        ),
        (
            "id-malformed",
            &[
                "could not be read",
                "The actor is unknown",
                "The claim as sent:",
            ],
        ),
        (
            "id-spoof",
            &["mallory@example.com is the actor", "NOT believed (spoofed)"],
        ),
    ];
    for (id, says) in cases {
        let out = explain(&lake, id);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for want in *says {
            assert!(text.contains(want), "{id}: missing {want:?} in\n{text}");
        }
        if *id == "id-nested" {
            assert!(text.contains(pinniped), "{text}");
            assert_eq!(
                text.matches(" in cluster c1").count(),
                1,
                "one request:\n{text}"
            );
        }
    }
    let out = explain(&lake, "no-such-id");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no request with Audit-ID \"no-such-id\""),
        "{err}"
    );
}
