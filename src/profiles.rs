//! Proxy profiles: the configuration that decides whose identity claims are
//! believed.
//!
//! Loaded from TOML (`schemas/proxies.toml` is embedded as the default). A
//! profile names the proxy's own identity (exact usernames or `*` globs) and
//! where the proxy records its caller. Validation happens at load time so the
//! resolver never meets an inconsistent profile.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The profiles shipped with auditlake.
pub const DEFAULT_PROFILES_TOML: &str = include_str!("../schemas/proxies.toml");

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read proxy profiles {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("proxy profiles {origin} are not valid TOML: {source}\nhint: compare with `schemas/proxies.toml` in the auditlake repository")]
    Parse {
        origin: String,
        source: toml::de::Error,
    },
    #[error("proxy profile `{profile}` in {origin}: {problem}")]
    Invalid {
        origin: String,
        profile: String,
        problem: String,
    },
}

/// Where a proxy records the caller it acts for.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The proxy records nothing beyond `impersonatedUser` itself.
    None,
    /// One extra key holding a JSON `authentication/v1` `UserInfo` (Pinniped).
    UserInfoJson { key: String },
    /// Separate extra keys (kube-oidc-proxy): plain user / uid, a list of
    /// groups and a JSON-encoded extra map.
    SplitKeys {
        user_key: String,
        uid_key: Option<String>,
        groups_key: Option<String>,
        extra_key: Option<String>,
    },
}

impl Claim {
    /// Every extra key that, when present, means "a claim was made".
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Claim::None => vec![],
            Claim::UserInfoJson { key } => vec![key.as_str()],
            Claim::SplitKeys {
                user_key,
                uid_key,
                groups_key,
                extra_key,
            } => std::iter::once(user_key.as_str())
                .chain(uid_key.as_deref())
                .chain(groups_key.as_deref())
                .chain(extra_key.as_deref())
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: Option<String>,
    pub proxy_usernames: Vec<String>,
    pub proxy_patterns: Vec<String>,
    pub claim: Claim,
    pub client_ip_key: Option<String>,
    /// Extra keys worth reading beside the claim (documentation).
    pub keep_extra: Vec<String>,
}

impl Profile {
    /// Whether `username` is this proxy's own identity.
    pub fn matches(&self, username: &str) -> bool {
        self.proxy_usernames.iter().any(|u| u == username)
            || self.proxy_patterns.iter().any(|p| glob_match(p, username))
    }
}

/// The loaded, validated set of profiles. Order matters: the first profile
/// whose identity matches wins.
#[derive(Debug, Clone)]
pub struct Profiles {
    pub profiles: Vec<Profile>,
    /// Every claim key of every profile, enabled or not: any of them seen on
    /// an event from a non-proxy marks a spoof attempt.
    claim_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    profile: Vec<RawProfile>,
    /// Trusted forwarding proxies, one line each: `name = ["identity", …]`
    /// (a `*` makes an entry a pattern). They send no claim: the caller is
    /// `impersonatedUser`.
    #[serde(default)]
    forwarders: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    proxy_usernames: Vec<String>,
    #[serde(default)]
    proxy_patterns: Vec<String>,
    claim: String,
    claim_key: Option<String>,
    user_key: Option<String>,
    uid_key: Option<String>,
    groups_key: Option<String>,
    extra_key: Option<String>,
    client_ip_key: Option<String>,
    #[serde(default)]
    keep_extra: Vec<String>,
}

impl Profiles {
    /// The embedded default profiles.
    pub fn builtin() -> Self {
        // The embedded file is validated by a unit test, so this cannot fail
        // at run time; fall back to no profiles rather than panic regardless.
        Self::from_toml(DEFAULT_PROFILES_TOML, "built-in profiles").unwrap_or_else(|_| Profiles {
            profiles: vec![],
            claim_keys: vec![],
        })
    }

    /// Load from `path`, or the built-in profiles when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ProfileError> {
        match path {
            None => Ok(Self::builtin()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ProfileError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Self::from_toml(&text, &p.display().to_string())
            }
        }
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ProfileError> {
        let raw: RawFile = toml::from_str(text).map_err(|source| ProfileError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        let invalid = |profile: &str, problem: String| ProfileError::Invalid {
            origin: origin.to_string(),
            profile: profile.to_string(),
            problem,
        };
        let mut profiles = Vec::with_capacity(raw.profile.len() + raw.forwarders.len());
        for p in raw.profile {
            let claim = match p.claim.as_str() {
                "none" => Claim::None,
                "userinfo_json" => Claim::UserInfoJson {
                    key: p.claim_key.clone().ok_or_else(|| {
                        invalid(&p.name, "claim = \"userinfo_json\" needs claim_key".into())
                    })?,
                },
                "split_keys" => Claim::SplitKeys {
                    user_key: p.user_key.clone().ok_or_else(|| {
                        invalid(&p.name, "claim = \"split_keys\" needs user_key".into())
                    })?,
                    uid_key: p.uid_key.clone(),
                    groups_key: p.groups_key.clone(),
                    extra_key: p.extra_key.clone(),
                },
                other => {
                    return Err(invalid(
                        &p.name,
                        format!("unknown claim `{other}`; use none, userinfo_json or split_keys"),
                    ))
                }
            };
            profiles.push(Profile {
                name: p.name,
                description: p.description,
                proxy_usernames: p.proxy_usernames,
                proxy_patterns: p.proxy_patterns,
                claim,
                client_ip_key: p.client_ip_key,
                keep_extra: p.keep_extra,
            });
        }
        for (name, identities) in raw.forwarders {
            let (patterns, usernames): (Vec<String>, Vec<String>) =
                identities.into_iter().partition(|i| i.contains('*'));
            profiles.push(Profile {
                name,
                description: Some("Trusted forwarding proxy (the [forwarders] table): the caller is impersonatedUser.".into()),
                proxy_usernames: usernames,
                proxy_patterns: patterns,
                claim: Claim::None,
                client_ip_key: None,
                keep_extra: Vec::new(),
            });
        }
        for (i, p) in profiles.iter().enumerate() {
            if profiles[..i].iter().any(|q| q.name == p.name) {
                return Err(invalid(&p.name, "duplicate profile name".into()));
            }
            for pat in &p.proxy_patterns {
                if pat.is_empty() || pat.chars().all(|c| c == '*') {
                    return Err(invalid(
                        &p.name,
                        format!("pattern `{pat}` would trust every identity"),
                    ));
                }
            }
            if p.proxy_usernames.iter().any(String::is_empty) {
                return Err(invalid(
                    &p.name,
                    "an empty username would trust failed authentication".into(),
                ));
            }
        }
        let mut claim_keys: Vec<String> = profiles
            .iter()
            .flat_map(|p| p.claim.keys().into_iter().map(str::to_string))
            .collect();
        claim_keys.sort();
        claim_keys.dedup();
        Ok(Profiles {
            profiles,
            claim_keys,
        })
    }

    /// The first profile with a claim key for which `present` holds: whose
    /// claim a spoofed request imitates.
    pub fn claimed_by(&self, present: impl Fn(&str) -> bool) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|p| p.claim.keys().iter().any(|k| present(k)))
    }

    /// The profile whose proxy identity is `username`, if any.
    pub fn proxy_for(&self, username: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.matches(username))
    }

    pub fn claim_keys(&self) -> &[String] {
        &self.claim_keys
    }

    /// Make `username` the proxy identity of profile `name` (used by the
    /// demo, and by tests, to activate kube-oidc-proxy).
    pub fn add_proxy_username(&mut self, name: &str, username: &str) -> bool {
        match self.profiles.iter_mut().find(|p| p.name == name) {
            Some(p) => {
                p.proxy_usernames.push(username.to_string());
                true
            }
            None => false,
        }
    }
}

/// Glob match where `*` matches any run of characters (including `:`).
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_load() {
        let p = Profiles::from_toml(DEFAULT_PROFILES_TOML, "builtin").expect("valid builtin");
        let names: Vec<_> = p.profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pinniped",
                "kube-oidc-proxy",
                "rancher",
                "azure-arc",
                "gitlab-agent",
                "karmada",
                "tailscale"
            ]
        );
        // Forwarders send no claim and trust their own identities only.
        let karmada = &p.profiles[5];
        assert_eq!(karmada.claim, Claim::None);
        assert!(karmada.matches("system:serviceaccount:karmada-cluster:karmada-impersonator"));
        assert!(!karmada.matches("system:serviceaccount:karmada-cluster:other"));
        assert!(p
            .claim_keys()
            .iter()
            .any(|k| k == "original-user-info.impersonation-proxy.concierge.pinniped.dev"));
        assert!(p
            .claim_keys()
            .iter()
            .any(|k| k == "originaluser.jetstack.io-user"));
        // kube-oidc-proxy is inactive until configured.
        assert!(p.profiles[1].proxy_usernames.is_empty());
    }

    /// A forwarder is one line, and works as a profile with `claim = "none"`.
    #[test]
    fn a_forwarder_is_one_line() {
        let p = Profiles::from_toml(
            "[forwarders]\nteleport = [\"system:serviceaccount:teleport:teleport-kube-agent\", \"system:serviceaccount:teleport-*:agent\"]\n",
            "t.toml",
        )
        .expect("valid");
        let t = p
            .proxy_for("system:serviceaccount:teleport-eu:agent")
            .expect("pattern");
        assert_eq!(t.name, "teleport");
        assert!(p
            .proxy_for("system:serviceaccount:teleport:teleport-kube-agent")
            .is_some());
        assert!(p
            .proxy_for("system:serviceaccount:teleport:other")
            .is_none());
    }

    #[test]
    fn glob_rows() {
        let rows = [
            ("a:*", "a:b", true),
            ("a:*", "a:", true),
            ("a:*", "b:a", false),
            ("*-x", "y-x", true),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "a-c", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("ab*ba", "aba", false),
        ];
        for (pat, text, want) in rows {
            assert_eq!(glob_match(pat, text), want, "{pat} ~ {text}");
        }
    }

    #[test]
    fn invalid_profiles_are_explained() {
        let cases = [
            (
                "[[profile]]\nname='x'\nclaim='userinfo_json'\n",
                "needs claim_key",
            ),
            ("[[profile]]\nname='x'\nclaim='magic'\n", "unknown claim"),
            (
                "[[profile]]\nname='x'\nclaim='none'\nproxy_patterns=['*']\n",
                "trust every identity",
            ),
            ("[[profile]]\nname='x'\nclaim='none'\nbogus=1\n", "bogus"),
            ("[forwarders]\nx = ['*']\n", "trust every identity"),
            ("[forwarders]\nx = ['']\n", "empty username"),
            (
                "[[profile]]\nname='x'\nclaim='none'\n[forwarders]\nx = ['a']\n",
                "duplicate profile name",
            ),
        ];
        for (text, want) in cases {
            let err = Profiles::from_toml(text, "t.toml")
                .expect_err(text)
                .to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}
