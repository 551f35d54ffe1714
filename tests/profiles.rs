//! Proxy profiles end to end: the GitLab agent and the forwarding proxies resolve as their
//! projects document (`tests/fixtures/proxies.jsonl`), a wrong profile is no longer silent
//! (ingest warns, `profiles suggest` names the identity), and `profiles check` validates files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::path::Path;

fn actors(lake: &Path) -> Vec<Vec<String>> {
    sql(
        lake,
        "SELECT audit_id, resolution, claim_status, actor_username, acted_as_username, \
         coalesce(proxy_profile, '') FROM audit ORDER BY audit_id",
    )
}

/// The built-in profiles with Pinniped's proxy identity replaced by `identity`.
fn pinniped_as(dir: &Path, identity: &str) -> std::path::PathBuf {
    let fixed = dir.join("fixed.toml");
    std::fs::write(
        &fixed,
        auditlake::profiles::DEFAULT_PROFILES_TOML.replace(
            "proxy_usernames = [\"system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy\"]",
            &format!("proxy_usernames = [\"{identity}\"]"),
        ),
    )
    .unwrap();
    fixed
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn gitlab_agent_and_forwarders_resolve_to_the_person() {
    let dir = tempfile::tempdir().unwrap();
    // The agent's identity is an install-time value: a user's file names it.
    let profiles = dir.path().join("proxies.toml");
    let builtin = String::from_utf8(run(&["profiles", "check"]).stdout).unwrap();
    assert!(
        builtin.contains("gitlab-agent\n  trusts: nobody"),
        "{builtin}"
    );
    let text = auditlake::profiles::DEFAULT_PROFILES_TOML.replace(
        "user_key = \"agent.gitlab.com/username\"",
        "user_key = \"agent.gitlab.com/username\"\nproxy_patterns = [\"system:serviceaccount:gitlab-agent-*:gitlab-agent\"]",
    );
    std::fs::write(&profiles, text).unwrap();
    let lake = dir.path().join("lake");
    let p = profiles.display().to_string();
    let out = ingest(&lake, &["--profiles", &p], &[&fixture("proxies.jsonl")]);
    let r = actors(&lake);
    let row = |id: &str| r.iter().find(|x| x[0] == id).cloned().unwrap();
    assert_eq!(
        row("gl-ci-job"),
        [
            "gl-ci-job",
            "proxy_nested",
            "trusted",
            "alice",
            "gitlab:ci_job:4711",
            "gitlab-agent"
        ]
    );
    assert_eq!(
        row("gl-user"),
        [
            "gl-user",
            "proxy_nested",
            "trusted",
            "bob",
            "gitlab:user:bob",
            "gitlab-agent"
        ]
    );
    // The same claim from a person is not believed.
    assert_eq!(
        row("gl-forged"),
        [
            "gl-forged",
            "impersonation",
            "spoofed",
            "mallory@example.com",
            "gitlab:user:alice",
            ""
        ]
    );
    assert!(stderr(&out).contains("`mallory@example.com` is not a service account"));
    // Forwarders: the caller is impersonatedUser.
    assert_eq!(
        row("karmada"),
        [
            "karmada",
            "proxy",
            "none",
            "carol@example.com",
            "carol@example.com",
            "karmada"
        ]
    );
    assert_eq!(
        row("tailscale"),
        [
            "tailscale",
            "proxy",
            "none",
            "dave@example.com",
            "dave@example.com",
            "tailscale"
        ]
    );
    // OCM's proxy is install-specific: until trusted, the proxy is the actor.
    assert_eq!(
        row("ocm-hub")[1..4],
        [
            "impersonation",
            "none",
            "system:serviceaccount:open-cluster-management-cluster-proxy:cluster-proxy"
        ]
    );
    // The job's context stays beside the actor.
    assert_eq!(
        scalar(
            &lake,
            "SELECT impersonated_extra['agent.gitlab.com/ci_pipeline_id'][1] FROM audit WHERE audit_id = 'gl-ci-job'"
        ),
        "900"
    );
}

#[test]
fn a_forwarder_is_one_line_in_a_profile_file() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("p.toml");
    std::fs::write(
        &profiles,
        "[forwarders]\nocm = [\"system:serviceaccount:open-cluster-management-cluster-proxy:*\"]\n",
    )
    .unwrap();
    let p = profiles.display().to_string();
    let check = String::from_utf8(run(&["profiles", "check", "--profiles", &p]).stdout).unwrap();
    assert!(check.contains("ocm\n  trusts: `system:serviceaccount:open-cluster-management-cluster-proxy:*` (pattern)\n  caller: none"), "{check}");
    let lake = dir.path().join("lake");
    ingest(&lake, &["--profiles", &p], &[&fixture("proxies.jsonl")]);
    assert_eq!(
        scalar(
            &lake,
            "SELECT actor_username || ' ' || proxy_profile FROM audit WHERE audit_id = 'ocm-hub'"
        ),
        "cluster:hub:system:serviceaccount:ops:deployer ocm"
    );
}

#[test]
fn invalid_profile_files_are_named_with_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[profile]]\nname = \"x\"\nclaim = \"split_keys\"\n").unwrap();
    let b = bad.display().to_string();
    fails_with(
        &["profiles", "check", "--profiles", &b],
        "proxy profile `x`",
    );
    fails_with(&["profiles", "check", "--profiles", &b], "needs user_key");
    std::fs::write(&bad, "[forwarders]\nall = [\"*\"]\n").unwrap();
    fails_with(
        &["profiles", "check", "--profiles", &b],
        "would trust every identity",
    );
}

/// Pinniped installed under another namespace: every Pinniped user showed up as the proxy, with
/// `spoofed` flags and no warning. Now ingest warns, `profiles suggest` names the identity, and
/// the fixed file resolves the same events.
#[test]
fn a_proxy_under_another_name_is_not_silent() {
    let dir = tempfile::tempdir().unwrap();
    let moved = "system:serviceaccount:auth-system:pinniped-concierge-impersonation-proxy";
    let input = dir.path().join("moved.jsonl");
    let text = std::fs::read_to_string(fixture("identities.jsonl"))
        .unwrap()
        .replace(
            "system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy",
            moved,
        );
    std::fs::write(&input, text).unwrap();
    let lake = dir.path().join("lake");
    let out = ingest(&lake, &[], &[&input]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "warning: 2 requests from `{moved}` carry the claim of proxy profile `pinniped`"
        )),
        "{err}"
    );
    assert!(
        err.contains("add it to that profile's proxy_usernames"),
        "{err}"
    );

    let l = lake.display().to_string();
    let suggested = String::from_utf8(run(&["profiles", "suggest", "--lake", &l]).stdout).unwrap();
    assert!(suggested.contains(&format!("{moved}\n")), "{suggested}");
    assert!(
        suggested.contains("carries the claim keys of profile `pinniped`"),
        "{suggested}"
    );
    assert!(
        suggested.contains(&format!("proxy_usernames = [..., \"{moved}\"]")),
        "{suggested}"
    );

    // With the identity added, suggest has nothing left to say about it, and a fresh ingest
    // resolves the human.
    let fixed = pinniped_as(dir.path(), moved);
    let f = fixed.display().to_string();
    let suggested =
        String::from_utf8(run(&["profiles", "suggest", "--lake", &l, "--profiles", &f]).stdout)
            .unwrap();
    assert!(!suggested.contains(moved), "{suggested}");
    let lake2 = dir.path().join("lake2");
    let out = ingest(&lake2, &["--profiles", &f], &[&input]);
    assert!(!stderr(&out).contains(moved), "{}", stderr(&out));
    assert_eq!(
        scalar(&lake2, "SELECT actor_username FROM audit WHERE audit_id = 'id-nested' AND stage = 'ResponseComplete'"),
        "carol@example.com"
    );
}

/// A profile fix applies to past data: `lake reresolve` recomputes the resolution columns in
/// place, leaves every other column as it was, and rewrites nothing when nothing changes (with
/// the profiles the lake was written with, too: the rebuilt events resolve as the originals).
#[test]
fn lake_reresolve_applies_a_profile_fix_to_stored_rows() {
    let dir = tempfile::tempdir().unwrap();
    let moved = "system:serviceaccount:auth-system:pinniped-concierge-impersonation-proxy";
    let input = dir.path().join("moved.jsonl");
    let gen = dir.path().join("gen.jsonl");
    gen_file(&gen, 3000, 5);
    let text = std::fs::read_to_string(fixture("identities.jsonl")).unwrap()
        + &std::fs::read_to_string(&gen).unwrap();
    std::fs::write(
        &input,
        text.replace(
            "system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy",
            moved,
        ),
    )
    .unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, &["--cluster", "c"], &[&input]);
    let l = lake.display().to_string();
    let rest = "SELECT audit_id, stage, source, cluster, verb, request_uri, authn_username, \
                impersonated_username, array_to_string(impersonated_groups, ','), \
                request_received_at, stage_at, ingested_at, response_code, decision \
                FROM audit ORDER BY source, audit_id, stage, stage_at";
    let resolution = "SELECT source, audit_id, stage, resolution, claim_status, actor_username, \
                      coalesce(proxy_profile, ''), coalesce(credential_id, '') FROM audit \
                      ORDER BY source, audit_id, stage, stage_at";
    let (rest_before, res_before) = (sql(&lake, rest), sql(&lake, resolution));
    let files = |lake: &Path| -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        parquet_files(lake)
            .into_iter()
            .map(|p| {
                let t = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, t)
            })
            .collect()
    };
    let before = files(&lake);

    // The profiles it was written with: nothing changes, nothing is rewritten.
    let out = run(&["lake", "reresolve", &l]);
    assert!(
        stderr(&out).contains("0 rows resolve differently, in 0 files"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(&lake), before);

    let fixed = pinniped_as(dir.path(), moved);
    let f = fixed.display().to_string();
    let dry = run(&["lake", "reresolve", &l, "--profiles", &f, "--dry-run"]);
    assert!(stderr(&dry).contains("dry run"), "{}", stderr(&dry));
    assert_eq!(files(&lake), before, "a dry run writes nothing");
    let out = run(&["lake", "reresolve", &l, "--profiles", &f]);
    let err = stderr(&out);
    assert!(err.contains("rewritten"), "{err}");
    assert_eq!(sql(&lake, rest), rest_before, "other columns are kept");
    let res_after = sql(&lake, resolution);
    assert_ne!(res_after, res_before);
    // What a fresh ingest with the fixed profiles gives, row for row.
    let fresh = dir.path().join("fresh");
    ingest(&fresh, &["--cluster", "c", "--profiles", &f], &[&input]);
    assert_eq!(res_after, sql(&fresh, resolution));
    assert_eq!(
        scalar(&lake, "SELECT actor_username FROM audit WHERE audit_id = 'id-nested' AND stage = 'ResponseComplete'"),
        "carol@example.com"
    );
    // Again: nothing left to change.
    let out = run(&["lake", "reresolve", &l, "--profiles", &f]);
    assert!(
        stderr(&out).contains("0 rows resolve differently"),
        "{}",
        stderr(&out)
    );
    assert!(!lake.join("_tmp").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("reresolve")));
}
