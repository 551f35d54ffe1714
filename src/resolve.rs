//! Identity resolution: who actually acted.
//!
//! A pure function from one decoded [`Event`] and the configured [`Profiles`]
//! to a [`Resolved`] identity. The rules (see the README table):
//!
//! | case | resolution | actor | claim_status |
//! |---|---|---|---|
//! | no impersonatedUser | direct | user | none |
//! | impersonatedUser, user not a proxy | impersonation | user | none / spoofed |
//! | user is a proxy, no claim | proxy | impersonatedUser | none |
//! | user is a proxy, valid claim | proxy_nested | claim | trusted |
//! | user is a proxy, unreadable claim | proxy_claim_malformed | NULL | malformed |
//!
//! Invariant: a claim is believed only when `user.username` is a configured
//! proxy identity of the profile that defines the claim. Anything else that
//! carries a claim key is recorded as `spoofed` and its text kept as evidence.

use crate::event::{Event, ExtraValues, Str, UserInfo};
use crate::profiles::{Claim, Profile, Profiles};
use std::borrow::Cow;

/// Claims larger than this are treated as malformed (a UserInfo is a few
/// hundred bytes; anything this size is an attack or a bug).
pub const MAX_CLAIM_BYTES: usize = 64 * 1024;

pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
pub const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const NODE_UID: &str = "authentication.kubernetes.io/node-uid";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    Direct,
    Impersonation,
    Proxy,
    ProxyNested,
    ProxyClaimMalformed,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Direct => "direct",
            Resolution::Impersonation => "impersonation",
            Resolution::Proxy => "proxy",
            Resolution::ProxyNested => "proxy_nested",
            Resolution::ProxyClaimMalformed => "proxy_claim_malformed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimStatus {
    None,
    Trusted,
    Spoofed,
    Malformed,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::None => "none",
            ClaimStatus::Trusted => "trusted",
            ClaimStatus::Spoofed => "spoofed",
            ClaimStatus::Malformed => "malformed",
        }
    }
}

/// Which identity of the event the actor (or acted-as identity) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    User,
    Impersonated,
    Original,
    Unknown,
}

/// The resolved identities of one event. Borrows the event.
#[derive(Debug, Clone)]
pub struct Resolved<'e> {
    pub resolution: Resolution,
    pub claim_status: ClaimStatus,
    pub actor: Who,
    pub acted_as: Who,
    /// The original caller from a trusted claim.
    pub original: Option<UserInfo<'e>>,
    /// The claim text as found (trusted, spoofed or malformed).
    pub claim_raw: Option<Cow<'e, str>>,
    pub proxy_profile: Option<&'e str>,
    pub proxy_username: Option<&'e str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    ServiceAccount,
    Node,
    Anonymous,
    System,
    User,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::ServiceAccount => "serviceaccount",
            ActorKind::Node => "node",
            ActorKind::Anonymous => "anonymous",
            ActorKind::System => "system",
            ActorKind::User => "user",
        }
    }
}

/// Classify a username; for service accounts also return (namespace, name).
/// An empty username (failed authentication) has no kind.
pub fn actor_kind(username: &str) -> Option<(ActorKind, Option<(&str, &str)>)> {
    if username.is_empty() {
        return None;
    }
    if let Some(rest) = username.strip_prefix("system:serviceaccount:") {
        // Exactly NS:NAME, both non-empty (SplitUsername's rule).
        let mut parts = rest.split(':');
        if let (Some(ns), Some(name), None) = (parts.next(), parts.next(), parts.next()) {
            if !ns.is_empty() && !name.is_empty() {
                return Some((ActorKind::ServiceAccount, Some((ns, name))));
            }
        }
        return Some((ActorKind::System, None));
    }
    if username.starts_with("system:node:") {
        return Some((ActorKind::Node, None));
    }
    if username == "system:anonymous" {
        return Some((ActorKind::Anonymous, None));
    }
    if username.starts_with("system:") {
        return Some((ActorKind::System, None));
    }
    Some((ActorKind::User, None))
}

impl<'e> Resolved<'e> {
    /// The identity named by `who`, if any.
    pub fn identity<'s>(&'s self, who: Who, event: &'s Event<'e>) -> Option<&'s UserInfo<'e>> {
        match who {
            Who::User => Some(&event.user),
            Who::Impersonated => event.impersonated_user.as_ref(),
            Who::Original => self.original.as_ref(),
            Who::Unknown => None,
        }
    }
}

/// Resolve who acted in `event`.
pub fn resolve<'e>(event: &'e Event<'e>, profiles: &'e Profiles) -> Resolved<'e> {
    let username = event.user.username.as_deref().unwrap_or("");
    let base = Resolved {
        resolution: Resolution::Direct,
        claim_status: ClaimStatus::None,
        actor: Who::User,
        acted_as: Who::User,
        original: None,
        claim_raw: None,
        proxy_profile: None,
        proxy_username: None,
    };
    let Some(imp) = event.impersonated_user.as_ref() else {
        return base;
    };
    let Some(profile) = profiles.proxy_for(username) else {
        // Impersonation by an ordinary identity (kubectl --as, controllers).
        // Any proxy claim here was not written by a configured proxy.
        let spoof = foreign_claim(imp, profiles, None);
        return Resolved {
            resolution: Resolution::Impersonation,
            claim_status: if spoof.is_some() {
                ClaimStatus::Spoofed
            } else {
                ClaimStatus::None
            },
            acted_as: Who::Impersonated,
            claim_raw: spoof,
            ..base
        };
    };
    let proxied = Resolved {
        resolution: Resolution::Proxy,
        actor: Who::Impersonated,
        acted_as: Who::Impersonated,
        proxy_profile: Some(profile.name.as_str()),
        proxy_username: Some(username),
        ..base
    };
    match read_claim(imp, profile) {
        ClaimRead::Absent => {
            // A proxy carrying another profile's claim key is not the
            // author of that claim either.
            match foreign_claim(imp, profiles, Some(profile)) {
                Some(raw) => Resolved {
                    claim_status: ClaimStatus::Spoofed,
                    claim_raw: Some(raw),
                    ..proxied
                },
                None => proxied,
            }
        }
        ClaimRead::Valid { original, raw } => Resolved {
            resolution: Resolution::ProxyNested,
            claim_status: ClaimStatus::Trusted,
            actor: Who::Original,
            original: Some(original),
            claim_raw: Some(raw),
            ..proxied
        },
        ClaimRead::Malformed { raw } => Resolved {
            resolution: Resolution::ProxyClaimMalformed,
            claim_status: ClaimStatus::Malformed,
            actor: Who::Unknown,
            claim_raw: Some(raw),
            ..proxied
        },
    }
}

enum ClaimRead<'e> {
    Absent,
    Valid {
        original: UserInfo<'e>,
        raw: Cow<'e, str>,
    },
    Malformed {
        raw: Cow<'e, str>,
    },
}

/// The raw text of the first claim key, of any profile other than `own`,
/// present in `imp.extra`.
fn foreign_claim<'e>(
    imp: &'e UserInfo<'e>,
    profiles: &Profiles,
    own: Option<&Profile>,
) -> Option<Cow<'e, str>> {
    let own_keys = own.map(|p| p.claim.keys()).unwrap_or_default();
    let present: Vec<&str> = profiles
        .claim_keys()
        .iter()
        .map(String::as_str)
        .filter(|k| !own_keys.contains(k) && imp.extra_values(k).is_some())
        .collect();
    match present.as_slice() {
        [] => None,
        [k] => Some(join_values(imp.extra_values(k).unwrap_or_default())),
        keys => Some(Cow::Owned(claim_object(imp, keys))),
    }
}

/// One value as-is; several as a JSON array of strings.
fn join_values<'e>(values: &'e [Str<'e>]) -> Cow<'e, str> {
    match values {
        [one] => Cow::Borrowed(one.as_ref()),
        many => Cow::Owned(serde_json::to_string(many).unwrap_or_default()),
    }
}

/// `{"key": [values], ...}` for several claim keys.
fn claim_object(imp: &UserInfo, keys: &[&str]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .filter_map(|k| {
            imp.extra_values(k).map(|v| {
                (
                    k.to_string(),
                    serde_json::Value::from(v.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                )
            })
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn read_claim<'e>(imp: &'e UserInfo<'e>, profile: &Profile) -> ClaimRead<'e> {
    match &profile.claim {
        Claim::None => ClaimRead::Absent,
        Claim::UserInfoJson { key } => {
            let Some(values) = imp.extra_values(key) else {
                return ClaimRead::Absent;
            };
            let raw = join_values(values);
            let Some(first) = values.first() else {
                return ClaimRead::Malformed { raw };
            };
            if first.len() > MAX_CLAIM_BYTES {
                return ClaimRead::Malformed { raw };
            }
            match parse_userinfo(first.as_ref()) {
                Some(original) => ClaimRead::Valid {
                    original,
                    raw: Cow::Borrowed(first.as_ref()),
                },
                None => ClaimRead::Malformed { raw },
            }
        }
        Claim::SplitKeys {
            user_key,
            uid_key,
            groups_key,
            extra_key,
        } => {
            let keys = profile.claim.keys();
            let present: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| imp.extra_values(k).is_some())
                .collect();
            if present.is_empty() {
                return ClaimRead::Absent;
            }
            let raw_text = claim_object(imp, &present);
            if raw_text.len() > MAX_CLAIM_BYTES {
                return ClaimRead::Malformed {
                    raw: Cow::Owned(raw_text),
                };
            }
            let raw = Cow::Owned(raw_text);
            let username = match imp.extra_first(user_key) {
                Some(u) if !u.is_empty() => u,
                _ => return ClaimRead::Malformed { raw },
            };
            let extra = match extra_key.as_deref().and_then(|k| imp.extra_first(k)) {
                None => Vec::new(),
                Some(text) => match parse_extra_map(text) {
                    Some(e) => e,
                    None => return ClaimRead::Malformed { raw },
                },
            };
            let original = UserInfo {
                username: Some(Cow::Borrowed(username)),
                uid: uid_key
                    .as_deref()
                    .and_then(|k| imp.extra_first(k))
                    .map(Cow::Borrowed),
                groups: groups_key
                    .as_deref()
                    .and_then(|k| imp.extra_values(k))
                    .map(|v| v.iter().map(|s| Cow::Borrowed(s.as_ref())).collect())
                    .unwrap_or_default(),
                extra,
            };
            ClaimRead::Valid { original, raw }
        }
    }
}

/// A JSON `UserInfo` with a non-empty username, or `None`.
fn parse_userinfo(text: &str) -> Option<UserInfo<'_>> {
    let value: &serde_json::value::RawValue = serde_json::from_str(text).ok()?;
    if !value.get().trim_start().starts_with('{') {
        return None;
    }
    let user: UserInfo = serde_json::from_str(text).ok()?;
    match user.username.as_deref() {
        Some(u) if !u.is_empty() => Some(user),
        _ => None,
    }
}

/// A JSON `map[string][]string`.
fn parse_extra_map(text: &str) -> Option<Vec<(Str<'_>, ExtraValues<'_>)>> {
    // Reuse UserInfo's tolerant extra decoding.
    let wrapped = format!("{{\"extra\":{text}}}");
    let user: UserInfo = serde_json::from_str(&wrapped).ok()?;
    // Re-own: `wrapped` is local, so the borrowed strings must be copied.
    Some(
        user.extra
            .into_iter()
            .map(|(k, v)| {
                (
                    Cow::Owned(k.into_owned()),
                    v.iter().map(|s| Cow::Owned(s.to_string())).collect(),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNIPED_SA: &str =
        "system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy";
    const PINNIPED_KEY: &str = "original-user-info.impersonation-proxy.concierge.pinniped.dev";

    fn profiles() -> Profiles {
        let mut p = Profiles::builtin();
        assert!(p.add_proxy_username("kube-oidc-proxy", "oidc-proxy"));
        p
    }

    fn event(json: &str) -> Event<'_> {
        serde_json::from_str(json).expect("test event parses")
    }

    fn pinniped_claim(blob: &str) -> String {
        let extra = serde_json::json!({ PINNIPED_KEY: [blob] });
        format!(
            r#"{{"user":{{"username":"{PINNIPED_SA}"}},"impersonatedUser":{{"username":"ops-bot","groups":["bots"],"extra":{extra}}}}}"#
        )
    }

    struct Row {
        name: &'static str,
        event: String,
        resolution: Resolution,
        actor: Option<&'static str>,
        acted_as: &'static str,
        claim: ClaimStatus,
        profile: Option<&'static str>,
    }

    #[test]
    fn identity_rules_table() {
        let big = format!(r#"{{"username":"{}"}}"#, "x".repeat(MAX_CLAIM_BYTES));
        let rows = vec![
            Row {
                name: "direct user",
                event: r#"{"user":{"username":"alice"}}"#.into(),
                resolution: Resolution::Direct,
                actor: Some("alice"),
                acted_as: "alice",
                claim: ClaimStatus::None,
                profile: None,
            },
            Row {
                name: "direct proxy with no impersonation (SA passthrough)",
                event: format!(r#"{{"user":{{"username":"{PINNIPED_SA}"}}}}"#),
                resolution: Resolution::Direct,
                actor: Some(PINNIPED_SA),
                acted_as: PINNIPED_SA,
                claim: ClaimStatus::None,
                profile: None,
            },
            Row {
                name: "failed authentication",
                event: r#"{"user":{},"responseStatus":{"code":401}}"#.into(),
                resolution: Resolution::Direct,
                actor: Some(""),
                acted_as: "",
                claim: ClaimStatus::None,
                profile: None,
            },
            Row {
                name: "kubectl --as",
                event: r#"{"user":{"username":"kubecfg"},"impersonatedUser":{"username":"superman","groups":["system:masters"]}}"#.into(),
                resolution: Resolution::Impersonation,
                actor: Some("kubecfg"),
                acted_as: "superman",
                claim: ClaimStatus::None,
                profile: None,
            },
            Row {
                name: "spoofed pinniped claim from a non-proxy",
                event: format!(
                    r#"{{"user":{{"username":"mallory"}},"impersonatedUser":{{"username":"bob","extra":{{"{PINNIPED_KEY}":["{{\"username\":\"ceo\"}}"]}}}}}}"#
                ),
                resolution: Resolution::Impersonation,
                actor: Some("mallory"),
                acted_as: "bob",
                claim: ClaimStatus::Spoofed,
                profile: None,
            },
            Row {
                name: "spoofed kube-oidc-proxy claim from a non-proxy",
                event: r#"{"user":{"username":"mallory"},"impersonatedUser":{"username":"bob","extra":{"originaluser.jetstack.io-user":["ceo"]}}}"#.into(),
                resolution: Resolution::Impersonation,
                actor: Some("mallory"),
                acted_as: "bob",
                claim: ClaimStatus::Spoofed,
                profile: None,
            },
            Row {
                name: "pinniped proxy, no nesting",
                event: format!(
                    r#"{{"user":{{"username":"{PINNIPED_SA}"}},"impersonatedUser":{{"username":"alice@example.com","groups":["devs"]}}}}"#
                ),
                resolution: Resolution::Proxy,
                actor: Some("alice@example.com"),
                acted_as: "alice@example.com",
                claim: ClaimStatus::None,
                profile: Some("pinniped"),
            },
            Row {
                name: "pinniped nested, valid claim",
                event: pinniped_claim(r#"{"username":"alice@example.com","groups":["admins"],"extra":{"Upper-Key":["v"]}}"#),
                resolution: Resolution::ProxyNested,
                actor: Some("alice@example.com"),
                acted_as: "ops-bot",
                claim: ClaimStatus::Trusted,
                profile: Some("pinniped"),
            },
            Row {
                name: "pinniped nested, claim not JSON",
                event: pinniped_claim("not json"),
                resolution: Resolution::ProxyClaimMalformed,
                actor: None,
                acted_as: "ops-bot",
                claim: ClaimStatus::Malformed,
                profile: Some("pinniped"),
            },
            Row {
                name: "pinniped nested, claim not an object",
                event: pinniped_claim(r#"["alice"]"#),
                resolution: Resolution::ProxyClaimMalformed,
                actor: None,
                acted_as: "ops-bot",
                claim: ClaimStatus::Malformed,
                profile: Some("pinniped"),
            },
            Row {
                name: "pinniped nested, claim without username",
                event: pinniped_claim(r#"{"groups":["admins"]}"#),
                resolution: Resolution::ProxyClaimMalformed,
                actor: None,
                acted_as: "ops-bot",
                claim: ClaimStatus::Malformed,
                profile: Some("pinniped"),
            },
            Row {
                name: "pinniped nested, claim over 64 KiB",
                event: pinniped_claim(&big),
                resolution: Resolution::ProxyClaimMalformed,
                actor: None,
                acted_as: "ops-bot",
                claim: ClaimStatus::Malformed,
                profile: Some("pinniped"),
            },
            Row {
                name: "pinniped nested, empty value list",
                event: format!(
                    r#"{{"user":{{"username":"{PINNIPED_SA}"}},"impersonatedUser":{{"username":"ops-bot","extra":{{"{PINNIPED_KEY}":[]}}}}}}"#
                ),
                resolution: Resolution::ProxyClaimMalformed,
                actor: None,
                acted_as: "ops-bot",
                claim: ClaimStatus::Malformed,
                profile: Some("pinniped"),
            },
            Row {
                name: "kube-oidc-proxy nested, valid split claim",
                event: r#"{"user":{"username":"oidc-proxy"},"impersonatedUser":{"username":"deployer","extra":{"originaluser.jetstack.io-user":["carol"],"originaluser.jetstack.io-groups":["g1","g2"],"originaluser.jetstack.io-extra":["{\"k\":[\"v\"]}"],"remote-client-ip":["198.51.100.4"]}}}"#.into(),
                resolution: Resolution::ProxyNested,
                actor: Some("carol"),
                acted_as: "deployer",
                claim: ClaimStatus::Trusted,
                profile: Some("kube-oidc-proxy"),
            },
            Row {
                name: "kube-oidc-proxy nested, extra not a JSON map",
                event: r#"{"user":{"username":"oidc-proxy"},"impersonatedUser":{"username":"deployer","extra":{"originaluser.jetstack.io-user":["carol"],"originaluser.jetstack.io-extra":["oops"]}}}"#.into(),
                resolution: Resolution::ProxyClaimMalformed,
                actor: None,
                acted_as: "deployer",
                claim: ClaimStatus::Malformed,
                profile: Some("kube-oidc-proxy"),
            },
            Row {
                name: "kube-oidc-proxy nested, groups without user",
                event: r#"{"user":{"username":"oidc-proxy"},"impersonatedUser":{"username":"deployer","extra":{"originaluser.jetstack.io-groups":["g1"]}}}"#.into(),
                resolution: Resolution::ProxyClaimMalformed,
                actor: None,
                acted_as: "deployer",
                claim: ClaimStatus::Malformed,
                profile: Some("kube-oidc-proxy"),
            },
            Row {
                name: "kube-oidc-proxy, only client ip",
                event: r#"{"user":{"username":"oidc-proxy"},"impersonatedUser":{"username":"dave","extra":{"remote-client-ip":["198.51.100.4"]}}}"#.into(),
                resolution: Resolution::Proxy,
                actor: Some("dave"),
                acted_as: "dave",
                claim: ClaimStatus::None,
                profile: Some("kube-oidc-proxy"),
            },
            Row {
                name: "rancher pattern proxy",
                event: r#"{"user":{"username":"system:serviceaccount:cattle-impersonation-system:cattle-impersonation-u-abc12"},"impersonatedUser":{"username":"u-abc12","extra":{"principalid":["local://u-abc12"],"username":["admin"]}}}"#.into(),
                resolution: Resolution::Proxy,
                actor: Some("u-abc12"),
                acted_as: "u-abc12",
                claim: ClaimStatus::None,
                profile: Some("rancher"),
            },
            Row {
                name: "rancher proxy carrying a pinniped claim is not believed",
                event: format!(
                    r#"{{"user":{{"username":"system:serviceaccount:cattle-impersonation-system:cattle-impersonation-u-x"}},"impersonatedUser":{{"username":"u-x","extra":{{"{PINNIPED_KEY}":["{{\"username\":\"ceo\"}}"]}}}}}}"#
                ),
                resolution: Resolution::Proxy,
                actor: Some("u-x"),
                acted_as: "u-x",
                claim: ClaimStatus::Spoofed,
                profile: Some("rancher"),
            },
            Row {
                name: "azure arc",
                event: r#"{"user":{"username":"system:serviceaccount:azure-arc:azure-arc-kube-aad-proxy-sa"},"impersonatedUser":{"username":"erin@contoso.com","extra":{"oid":["0000-1111"]}}}"#.into(),
                resolution: Resolution::Proxy,
                actor: Some("erin@contoso.com"),
                acted_as: "erin@contoso.com",
                claim: ClaimStatus::None,
                profile: Some("azure-arc"),
            },
            Row {
                name: "pinniped namespace not configured is just impersonation",
                event: r#"{"user":{"username":"system:serviceaccount:other-ns:pinniped-concierge-impersonation-proxy"},"impersonatedUser":{"username":"alice"}}"#.into(),
                resolution: Resolution::Impersonation,
                actor: Some("system:serviceaccount:other-ns:pinniped-concierge-impersonation-proxy"),
                acted_as: "alice",
                claim: ClaimStatus::None,
                profile: None,
            },
        ];
        let profiles = profiles();
        for row in &rows {
            let e = event(&row.event);
            let r = resolve(&e, &profiles);
            assert_eq!(r.resolution, row.resolution, "{}: resolution", row.name);
            assert_eq!(r.claim_status, row.claim, "{}: claim_status", row.name);
            let actor = r
                .identity(r.actor, &e)
                .map(|u| u.username.as_deref().unwrap_or(""));
            assert_eq!(actor, row.actor, "{}: actor", row.name);
            let acted = r
                .identity(r.acted_as, &e)
                .and_then(|u| u.username.as_deref())
                .unwrap_or("");
            assert_eq!(acted, row.acted_as, "{}: acted_as", row.name);
            assert_eq!(r.proxy_profile, row.profile, "{}: profile", row.name);
            match r.claim_status {
                ClaimStatus::None => assert!(r.claim_raw.is_none(), "{}: raw", row.name),
                _ => assert!(r.claim_raw.is_some(), "{}: raw kept", row.name),
            }
        }
    }

    #[test]
    fn nested_claim_carries_groups_uid_and_extra() {
        let text = pinniped_claim(
            r#"{"username":"system:serviceaccount:ns1:sa1","uid":"u-1","groups":["system:serviceaccounts"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=abc"],"EKS-Upper":["x"]}}"#,
        );
        let e = event(&text);
        let p = profiles();
        let r = resolve(&e, &p);
        let o = r.original.as_ref().expect("original");
        assert_eq!(o.uid.as_deref(), Some("u-1"));
        assert_eq!(o.groups, vec!["system:serviceaccounts"]);
        assert_eq!(o.extra_first(CREDENTIAL_ID), Some("JTI=abc"));
        assert_eq!(o.extra_first("EKS-Upper"), Some("x"));
    }

    #[test]
    fn actor_kind_rows() {
        let rows = [
            (
                "system:serviceaccount:kube-system:default",
                Some(ActorKind::ServiceAccount),
                Some(("kube-system", "default")),
            ),
            (
                "system:serviceaccount:kube-system",
                Some(ActorKind::System),
                None,
            ),
            ("system:serviceaccount:a:b:c", Some(ActorKind::System), None),
            ("system:node:worker-1", Some(ActorKind::Node), None),
            ("system:anonymous", Some(ActorKind::Anonymous), None),
            (
                "system:kube-controller-manager",
                Some(ActorKind::System),
                None,
            ),
            ("alice@example.com", Some(ActorKind::User), None),
            ("", None, None),
        ];
        for (name, kind, sa) in rows {
            let got = actor_kind(name);
            assert_eq!(got.map(|g| g.0), kind, "{name}");
            assert_eq!(got.and_then(|g| g.1), sa, "{name}");
        }
    }
}
