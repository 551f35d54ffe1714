//! `explain`: why a request resolved as it did, in words, from its stored columns.
//!
//! The words are derived from the record alone (the columns `resolve` wrote), never from a second
//! resolution, so they explain what the lake says and an investigator can check every sentence
//! against the row. A claim that was not believed (spoofed) or could not be read (malformed) is
//! quoted verbatim: it is evidence.
//!
//! An Audit-ID is client-settable, so several requests may carry one: each is explained on its
//! own (grouped by the request key of `requests`), and the text says that the ID is shared.

use super::named::sql_literal;
use super::{LakeQuery, QueryError};
use arrow::array::{Array, StringArray};
use std::fmt::Write as _;

/// The columns of one stored row that the explanation uses, as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stage {
    pub cluster: String,
    pub stage: Option<String>,
    pub received: Option<String>,
    pub stage_at: Option<String>,
    pub verb: Option<String>,
    pub request_uri: Option<String>,
    pub object: Option<String>,
    pub response_code: Option<String>,
    pub decision: Option<String>,
    pub decision_reason: Option<String>,
    pub source_ips: Option<String>,
    pub user_agent: Option<String>,
    pub authn_username: Option<String>,
    pub authn_groups: Option<String>,
    pub impersonated_username: Option<String>,
    pub impersonated_groups: Option<String>,
    pub original_username: Option<String>,
    pub original_groups: Option<String>,
    pub original_claim_raw: Option<String>,
    pub actor_username: Option<String>,
    pub actor_kind: Option<String>,
    pub acted_as_username: Option<String>,
    pub acted_as_groups: Option<String>,
    pub proxy_profile: Option<String>,
    pub proxy_username: Option<String>,
    pub resolution: String,
    pub claim_status: String,
    pub credential_id: Option<String>,
    pub authn_credential_id: Option<String>,
    pub pod_name: Option<String>,
    pub node_name: Option<String>,
    pub source: Option<String>,
}

/// The SELECT list, in [`Stage`]'s field order.
const COLUMNS: &[&str] = &[
    "cluster",
    "stage",
    "CAST(request_received_at AS VARCHAR)",
    "CAST(stage_at AS VARCHAR)",
    "verb",
    "request_uri",
    "concat_ws('/', namespace, resource, name, subresource)",
    "CAST(response_code AS VARCHAR)",
    "decision",
    "decision_reason",
    "array_to_string(source_ips, ', ')",
    "user_agent",
    "authn_username",
    "array_to_string(authn_groups, ', ')",
    "impersonated_username",
    "array_to_string(impersonated_groups, ', ')",
    "original_username",
    "array_to_string(original_groups, ', ')",
    "original_claim_raw",
    "actor_username",
    "actor_kind",
    "acted_as_username",
    "array_to_string(acted_as_groups, ', ')",
    "proxy_profile",
    "proxy_username",
    "resolution",
    "claim_status",
    "credential_id",
    "authn_credential_id",
    "pod_name",
    "node_name",
    "source",
];

/// Every stored row of `audit_id` (all clusters), oldest first.
pub async fn stages(lq: &LakeQuery, audit_id: &str) -> Result<Vec<Stage>, QueryError> {
    let select: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("CAST({c} AS VARCHAR) AS c{i}"))
        .collect();
    let sql = format!(
        "SELECT {} FROM lake.audit WHERE audit_id = {} ORDER BY cluster, request_received_at, stage_at, source",
        select.join(", "),
        sql_literal(audit_id)
    );
    let mut out = Vec::new();
    for b in lq.sql(&sql).await? {
        // VARCHAR may come back as Utf8View: one representation to read.
        let text: Vec<arrow::array::ArrayRef> = (0..COLUMNS.len())
            .map(|i| arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8))
            .collect::<Result<_, _>>()?;
        let cols: Vec<&StringArray> = text
            .iter()
            .map(|c| c.as_any().downcast_ref::<StringArray>())
            .collect::<Option<_>>()
            .ok_or_else(|| QueryError::Explain("columns did not come back as text".into()))?;
        for r in 0..b.num_rows() {
            let v = |i: usize| {
                let c = cols[i];
                (!c.is_null(r)).then(|| c.value(r).to_string())
            };
            out.push(Stage {
                cluster: v(0).unwrap_or_default(),
                stage: v(1),
                received: v(2),
                stage_at: v(3),
                verb: v(4),
                request_uri: v(5),
                object: v(6).filter(|s| !s.is_empty()),
                response_code: v(7),
                decision: v(8),
                decision_reason: v(9).filter(|s| !s.is_empty()),
                source_ips: v(10),
                user_agent: v(11),
                authn_username: v(12),
                authn_groups: v(13),
                impersonated_username: v(14),
                impersonated_groups: v(15),
                original_username: v(16),
                original_groups: v(17),
                original_claim_raw: v(18),
                actor_username: v(19),
                actor_kind: v(20),
                acted_as_username: v(21),
                acted_as_groups: v(22),
                proxy_profile: v(23),
                proxy_username: v(24),
                resolution: v(25).unwrap_or_default(),
                claim_status: v(26).unwrap_or_default(),
                credential_id: v(27),
                authn_credential_id: v(28),
                pod_name: v(29),
                node_name: v(30),
                source: v(31),
            });
        }
    }
    Ok(out)
}

/// The columns of the request key of `requests` that a stored row carries.
type RequestKey<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

fn request_key(s: &Stage) -> RequestKey<'_> {
    (
        &s.cluster,
        s.received.as_deref(),
        s.authn_username.as_deref(),
        s.verb.as_deref(),
        s.request_uri.as_deref(),
    )
}

/// One request: the stages that share its key (cluster, receive time, user, verb, URI), as
/// `requests` groups them.
fn requests(stages: &[Stage]) -> Vec<Vec<&Stage>> {
    let mut out: Vec<Vec<&Stage>> = Vec::new();
    for s in stages {
        match out.iter_mut().find(|r| request_key(r[0]) == request_key(s)) {
            Some(r) => r.push(s),
            None => out.push(vec![s]),
        }
    }
    out
}

fn or<'a>(v: &'a Option<String>, none: &'a str) -> &'a str {
    v.as_deref().filter(|s| !s.is_empty()).unwrap_or(none)
}

fn groups(v: &Option<String>) -> String {
    match v.as_deref().filter(|s| !s.is_empty()) {
        Some(g) => format!(" (groups {g})"),
        None => String::new(),
    }
}

/// What is wrong with a claim that could not be read, from its raw text.
fn claim_problem(raw: &str) -> &'static str {
    if raw.len() > crate::resolve::MAX_CLAIM_BYTES {
        return "it is over the 64 KiB a claim may take";
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Err(_) => "it is not valid JSON",
        Ok(serde_json::Value::Object(o)) => match o.get("username") {
            Some(serde_json::Value::String(u)) if !u.is_empty() => {
                "it does not have the shape the profile expects"
            }
            _ => "it names no username",
        },
        Ok(_) => "it is not a JSON object",
    }
}

/// The stage whose identity columns describe the request: the one that carried impersonation
/// (kube-apiserver writes `RequestReceived` before its impersonation filter runs), else the
/// last.
fn identity_stage<'a>(r: &[&'a Stage]) -> &'a Stage {
    r.iter()
        .rev()
        .find(|s| s.impersonated_username.is_some())
        .or(r.last())
        .copied()
        .unwrap_or(r[0])
}

/// Why one request resolved as it did.
fn explain_request(out: &mut String, r: &[&Stage]) {
    let s = identity_stage(r);
    let last = r.last().copied().unwrap_or(s);
    let authn = or(&s.authn_username, "");
    let actor = or(&s.actor_username, "");
    let acted_as = or(&s.acted_as_username, "");
    let proxy = or(&s.proxy_username, authn);
    let profile = or(&s.proxy_profile, "?");
    let raw = s.original_claim_raw.as_deref().unwrap_or("");
    let _ = writeln!(
        out,
        "{} {} in cluster {}, received {}:",
        or(&last.verb, "?"),
        or(&last.object, or(&last.request_uri, "?")),
        s.cluster,
        or(&s.received, "at an unknown time")
    );
    let mut why = String::new();
    match s.resolution.as_str() {
        "direct" if authn.is_empty() => {
            why.push_str(
                "Authentication failed: the request carries no user, so there is no actor.",
            );
        }
        "direct" => {
            let _ = write!(
                why,
                "{authn}{} made this request directly: no impersonation, so the authenticated user is the actor.",
                groups(&s.authn_groups)
            );
        }
        "impersonation" => {
            let _ = write!(
                why,
                "{authn} impersonated {} (kubectl --as or an Impersonate-User header): the request ran as {acted_as}{}. {authn} is not a configured proxy, so {authn} is the actor.",
                or(&s.impersonated_username, "?"),
                groups(&s.acted_as_groups)
            );
        }
        "proxy" => {
            let _ = write!(
                why,
                "{actor} reached the cluster through the {profile} proxy ({proxy}): {proxy} matches profile `{profile}`, and that proxy records its caller as the impersonated user, so {actor} is the actor. The request ran as {acted_as}{}.",
                groups(&s.acted_as_groups)
            );
        }
        "proxy_nested" => {
            let _ = write!(
                why,
                "{actor}{} connected through the {profile} proxy ({proxy}); the claim naming {actor} was trusted because the authenticated user {authn} matches profile `{profile}`. The request ran as {acted_as}{}.",
                groups(&s.original_groups),
                groups(&s.acted_as_groups)
            );
        }
        "proxy_claim_malformed" => {
            let _ = write!(
                why,
                "{proxy} matches profile `{profile}`, but the claim it carried could not be read: {}. The actor is unknown (no name is believed from an unreadable claim); the request ran as {acted_as}{}.",
                claim_problem(raw),
                groups(&s.acted_as_groups)
            );
        }
        other => {
            let _ = write!(why, "Resolution `{other}` is not one this version knows.");
        }
    }
    let _ = writeln!(out, "  {why}");
    match s.claim_status.as_str() {
        "spoofed" if s.resolution == "proxy" => {
            let _ = writeln!(
                out,
                "  It also carried another proxy's identity claim, which {proxy} (profile `{profile}`) may not make, so it was NOT believed (spoofed). The claim as sent: {raw}"
            );
        }
        "spoofed" => {
            let _ = writeln!(
                out,
                "  It carried an identity claim that only a configured proxy may make; {authn} is not one, so the claim was NOT believed (spoofed). The claim as sent: {raw}"
            );
        }
        "malformed" => {
            let _ = writeln!(out, "  The claim as sent: {raw}");
        }
        "trusted" => {
            let _ = writeln!(out, "  The claim: {raw}");
        }
        _ => {}
    }
    if let Some(kind) = s.actor_kind.as_deref() {
        let _ = writeln!(out, "  Actor kind: {kind}.");
    }
    let mut provenance = Vec::new();
    if let Some(c) = s.credential_id.as_deref() {
        provenance.push(format!("the actor's credential {c}"));
    }
    if let Some(c) = s
        .authn_credential_id
        .as_deref()
        .filter(|c| Some(*c) != s.credential_id.as_deref())
    {
        provenance.push(format!("the authenticated user's credential {c}"));
    }
    if let Some(p) = s.pod_name.as_deref() {
        provenance.push(format!("a token bound to pod {p}"));
    }
    if let Some(n) = s.node_name.as_deref() {
        provenance.push(format!("on node {n}"));
    }
    if !provenance.is_empty() {
        let _ = writeln!(out, "  Credentials: {}.", provenance.join(", "));
    }
    let _ = writeln!(
        out,
        "  From {} with user agent {}.",
        or(&s.source_ips, "unknown addresses"),
        or(&s.user_agent, "(none)")
    );
    let _ = writeln!(out, "  Stages:");
    for st in r {
        let mut line = format!("    {} at {}", or(&st.stage, "?"), or(&st.stage_at, "?"));
        if let Some(c) = st.response_code.as_deref() {
            let _ = write!(line, ", code {c}");
        }
        if let Some(d) = st.decision.as_deref() {
            let _ = write!(line, ", {d}");
            if let Some(why) = st.decision_reason.as_deref() {
                let _ = write!(line, " ({why})");
            }
        }
        if let Some(src) = st.source.as_deref() {
            let _ = write!(line, " [{src}]");
        }
        let _ = writeln!(out, "{line}");
    }
}

/// The whole explanation of `audit_id`'s rows (`None`: the lake has none).
pub fn explain(audit_id: &str, stages: &[Stage]) -> Option<String> {
    if stages.is_empty() {
        return None;
    }
    let reqs = requests(stages);
    let mut out = String::new();
    if reqs.len() > 1 {
        let _ = writeln!(
            out,
            "Audit-ID {audit_id} is carried by {} different requests. A client can set its own Audit-ID, so this alone is worth a look (see `--named audit-id-reuse`); each request is explained on its own.\n",
            reqs.len()
        );
    }
    for (i, r) in reqs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        explain_request(&mut out, r);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(resolution: &str, claim: &str) -> Stage {
        Stage {
            cluster: "prod".into(),
            stage: Some("ResponseComplete".into()),
            received: Some("2026-11-20T08:00:00Z".into()),
            stage_at: Some("2026-11-20T08:00:00.1Z".into()),
            verb: Some("get".into()),
            object: Some("payments/secrets/db".into()),
            response_code: Some("200".into()),
            decision: Some("allow".into()),
            resolution: resolution.into(),
            claim_status: claim.into(),
            source_ips: Some("10.0.0.1".into()),
            ..Stage::default()
        }
    }

    /// Every resolution kind, with what its explanation must say.
    #[test]
    fn every_resolution_is_explained() {
        let pinniped =
            "system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy";
        let trusted =
            format!("trusted because the authenticated user {pinniped} matches profile `pinniped`");
        let cases: Vec<(&str, Stage, Vec<&str>)> = vec![
            (
                "direct",
                Stage {
                    authn_username: Some("alice@example.com".into()),
                    authn_groups: Some("devs".into()),
                    actor_username: Some("alice@example.com".into()),
                    acted_as_username: Some("alice@example.com".into()),
                    actor_kind: Some("user".into()),
                    credential_id: Some("X509SHA256=abc".into()),
                    ..stage("direct", "none")
                },
                vec![
                    "alice@example.com (groups devs) made this request directly",
                    "credential X509SHA256=abc",
                    "Actor kind: user.",
                    "ResponseComplete at 2026-11-20T08:00:00.1Z, code 200, allow",
                ],
            ),
            (
                "failed authentication",
                Stage {
                    authn_username: Some(String::new()),
                    ..stage("direct", "none")
                },
                vec!["Authentication failed", "no actor"],
            ),
            (
                "kubectl --as",
                Stage {
                    authn_username: Some("kubecfg".into()),
                    impersonated_username: Some("superman".into()),
                    actor_username: Some("kubecfg".into()),
                    acted_as_username: Some("superman".into()),
                    acted_as_groups: Some("system:masters".into()),
                    ..stage("impersonation", "none")
                },
                vec![
                    "kubecfg impersonated superman",
                    "ran as superman (groups system:masters)",
                    "kubecfg is the actor",
                ],
            ),
            (
                "spoofed claim from a non-proxy",
                Stage {
                    authn_username: Some("mallory@example.com".into()),
                    impersonated_username: Some("ops-bot".into()),
                    actor_username: Some("mallory@example.com".into()),
                    acted_as_username: Some("ops-bot".into()),
                    original_claim_raw: Some(r#"{"username":"alice@example.com"}"#.into()),
                    ..stage("impersonation", "spoofed")
                },
                vec![
                    "mallory@example.com is the actor",
                    "NOT believed (spoofed)",
                    r#"The claim as sent: {"username":"alice@example.com"}"#,
                ],
            ),
            (
                "proxy",
                Stage {
                    authn_username: Some(
                        "system:serviceaccount:cattle-impersonation-system:cattle-impersonation-u1"
                            .into(),
                    ),
                    proxy_username: Some(
                        "system:serviceaccount:cattle-impersonation-system:cattle-impersonation-u1"
                            .into(),
                    ),
                    proxy_profile: Some("rancher".into()),
                    impersonated_username: Some("u-abc".into()),
                    actor_username: Some("u-abc".into()),
                    acted_as_username: Some("u-abc".into()),
                    ..stage("proxy", "none")
                },
                vec![
                    "u-abc reached the cluster through the rancher proxy",
                    "matches profile `rancher`",
                ],
            ),
            (
                "pinniped nested",
                Stage {
                    authn_username: Some(pinniped.into()),
                    proxy_username: Some(pinniped.into()),
                    proxy_profile: Some("pinniped".into()),
                    impersonated_username: Some("dev-team-admin".into()),
                    original_username: Some("alice@example.com".into()),
                    original_groups: Some("devs".into()),
                    original_claim_raw: Some(r#"{"username":"alice@example.com"}"#.into()),
                    actor_username: Some("alice@example.com".into()),
                    acted_as_username: Some("dev-team-admin".into()),
                    acted_as_groups: Some("admins".into()),
                    credential_id: Some("JTI=1234".into()),
                    ..stage("proxy_nested", "trusted")
                },
                vec![
                    "alice@example.com (groups devs) connected through the pinniped proxy",
                    trusted.as_str(),
                    "ran as dev-team-admin (groups admins)",
                    "credential JTI=1234",
                ],
            ),
            (
                "malformed claim",
                Stage {
                    authn_username: Some(pinniped.into()),
                    proxy_username: Some(pinniped.into()),
                    proxy_profile: Some("pinniped".into()),
                    impersonated_username: Some("ops-bot".into()),
                    original_claim_raw: Some(r#"{"groups":["admins"]"#.into()),
                    acted_as_username: Some("ops-bot".into()),
                    ..stage("proxy_claim_malformed", "malformed")
                },
                vec![
                    "could not be read: it is not valid JSON",
                    "The actor is unknown",
                    r#"The claim as sent: {"groups":["admins"]"#,
                ],
            ),
            (
                "proxy carrying another profile's claim",
                Stage {
                    authn_username: Some(pinniped.into()),
                    proxy_username: Some(pinniped.into()),
                    proxy_profile: Some("pinniped".into()),
                    impersonated_username: Some("bob".into()),
                    actor_username: Some("bob".into()),
                    acted_as_username: Some("bob".into()),
                    original_claim_raw: Some("ceo".into()),
                    ..stage("proxy", "spoofed")
                },
                vec![
                    "another proxy's identity claim",
                    "NOT believed (spoofed)",
                    "The claim as sent: ceo",
                ],
            ),
        ];
        for (name, s, says) in cases {
            let text = explain("id-1", &[s]).expect("rows");
            for want in &says {
                assert!(text.contains(want), "{name}: missing {want:?} in\n{text}");
            }
            assert!(!text.contains("different requests"), "{name}");
        }
    }

    #[test]
    fn claim_problems() {
        for (raw, want) in [
            ("{", "not valid JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"groups":["a"]}"#, "names no username"),
            (r#"{"username":""}"#, "names no username"),
        ] {
            assert!(claim_problem(raw).contains(want), "{raw}");
        }
        assert!(claim_problem(&"x".repeat(70 * 1024)).contains("64 KiB"));
    }

    /// Stages of one request are listed together, the impersonation stage gives the identity,
    /// and a reused Audit-ID is said to be shared.
    #[test]
    fn stages_and_reuse() {
        let received = Stage {
            stage: Some("RequestReceived".into()),
            authn_username: Some("kubecfg".into()),
            actor_username: Some("kubecfg".into()),
            ..stage("direct", "none")
        };
        let complete = Stage {
            authn_username: Some("kubecfg".into()),
            impersonated_username: Some("superman".into()),
            actor_username: Some("kubecfg".into()),
            acted_as_username: Some("superman".into()),
            ..stage("impersonation", "none")
        };
        let text = explain("id-2", &[received.clone(), complete.clone()]).expect("rows");
        assert!(text.contains("kubecfg impersonated superman"), "{text}");
        assert!(
            text.contains("RequestReceived at") && text.contains("ResponseComplete at"),
            "{text}"
        );
        assert_eq!(text.matches(" in cluster prod").count(), 1, "{text}");
        let other = Stage {
            received: Some("2026-11-21T10:00:00Z".into()),
            verb: Some("delete".into()),
            ..complete
        };
        let text = explain("id-2", &[received, other]).expect("rows");
        assert!(text.contains("carried by 2 different requests"), "{text}");
        assert!(explain("none", &[]).is_none());
    }
}
