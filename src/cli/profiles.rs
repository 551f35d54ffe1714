//! `auditlake profiles check|suggest`: what a profile file trusts, and which identities in a
//! lake impersonate others without a profile that trusts them.

use super::{now_us, runtime, ProfileArgs};
use anyhow::{Context, Result};
use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use auditlake::profiles::{Claim, Profiles};
use auditlake::query;
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:\n  auditlake profiles check --profiles my-proxies.toml\n  auditlake profiles suggest --lake L --since 7d\n  auditlake profiles suggest --lake L --profiles my-proxies.toml   # what this file would still miss";

/// Check proxy profiles, or find identities that need one.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Validate a profile file and print what each profile trusts.
    ///
    /// Exits non-zero, naming the profile and the problem, when the file
    /// is not valid. Without --profiles, checks the built-in profiles.
    Check {
        #[command(flatten)]
        profiles: ProfileArgs,
    },
    /// List authenticated identities that impersonate others and that no
    /// profile trusts: candidates for a profile.
    ///
    /// An identity whose requests carry a proxy's claim keys is most
    /// likely that proxy installed under another name (its requests are
    /// stored as `spoofed` until a profile names it); one that sends no
    /// claim may be a forwarding proxy (Teleport, Tailscale, ...) or a
    /// person using `kubectl --as`. Judged against --profiles (default:
    /// the built-in ones), so a fixed file can be checked before
    /// re-ingesting.
    Suggest {
        /// Lake directory.
        #[arg(long, env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
        /// Only requests received at or after this time (RFC 3339, a date,
        /// or a span back from now: `24h`, `7d`).
        #[arg(long, env = "AUDITLAKE_SINCE")]
        since: Option<String>,
        /// Only requests received before this time.
        #[arg(long, env = "AUDITLAKE_UNTIL")]
        until: Option<String>,
        /// At most this many identities, most requests first.
        #[arg(long, env = "AUDITLAKE_SUGGEST_LIMIT", default_value_t = 20,
              value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
        #[command(flatten)]
        profiles: ProfileArgs,
    },
}

pub fn run(a: Args) -> Result<()> {
    match a.action {
        Action::Check { profiles } => {
            let origin = profiles
                .profiles
                .as_ref()
                .map_or("the built-in profiles".to_string(), |p| {
                    p.display().to_string()
                });
            let loaded = profiles.load()?;
            print!("{}", describe(&loaded));
            println!("{origin}: {} profiles, valid", loaded.profiles.len());
            Ok(())
        }
        Action::Suggest {
            lake,
            since,
            until,
            limit,
            profiles,
        } => suggest(lake, since, until, limit, profiles.load()?),
    }
}

/// What each profile trusts and where it finds the caller.
fn describe(p: &Profiles) -> String {
    let mut out = String::new();
    for prof in &p.profiles {
        let trusts: Vec<String> = prof
            .proxy_usernames
            .iter()
            .map(|u| format!("`{u}`"))
            .chain(
                prof.proxy_patterns
                    .iter()
                    .map(|p| format!("`{p}` (pattern)")),
            )
            .collect();
        out.push_str(&format!("{}\n", prof.name));
        if trusts.is_empty() {
            out.push_str("  trusts: nobody (inactive: name the proxy's identity in proxy_usernames); its claim keys still mark spoofs\n");
        } else {
            out.push_str(&format!("  trusts: {}\n", trusts.join(", ")));
        }
        let claim = match &prof.claim {
            Claim::None => "none: the caller is impersonatedUser".to_string(),
            Claim::UserInfoJson { key } => {
                format!("a JSON UserInfo in impersonatedUser.extra[\"{key}\"]")
            }
            Claim::SplitKeys {
                user_key,
                uid_key,
                groups_key,
                extra_key,
            } => {
                let mut s = format!("the user in impersonatedUser.extra[\"{user_key}\"]");
                for (what, k) in [
                    ("uid", uid_key),
                    ("groups", groups_key),
                    ("extra", extra_key),
                ] {
                    if let Some(k) = k {
                        s.push_str(&format!(", {what} in [\"{k}\"]"));
                    }
                }
                s
            }
        };
        out.push_str(&format!("  caller: {claim}\n"));
        if let Some(k) = &prof.client_ip_key {
            out.push_str(&format!("  client address: extra[\"{k}\"]\n"));
        }
        if !prof.keep_extra.is_empty() {
            out.push_str(&format!("  context: {}\n", prof.keep_extra.join(", ")));
        }
    }
    out
}

fn suggest(
    lake: PathBuf,
    since: Option<String>,
    until: Option<String>,
    limit: u64,
    profiles: Profiles,
) -> Result<()> {
    let window = query::Window::new(None, since.as_deref(), until.as_deref(), now_us())?;
    // Over `audit`, not `requests`: a count of stored rows is enough to rank candidates, and it
    // reads only the identity columns.
    let sql = "SELECT authn_username, count(*) AS events, \
               count(DISTINCT impersonated_username) AS identities, \
               sum(CASE WHEN claim_status = 'spoofed' THEN 1 ELSE 0 END) AS with_claims, \
               max(CASE WHEN claim_status = 'spoofed' \
                   THEN array_to_string(map_keys(impersonated_extra), ' ') END) AS extra_keys \
               FROM audit WHERE impersonated_username IS NOT NULL AND authn_username <> '' \
               GROUP BY authn_username ORDER BY events DESC, authn_username";
    let batches = runtime()?
        .block_on(async {
            let mut lq = query::LakeQuery::open(&lake, &query::OpenOptions::default()).await?;
            lq.set_window(&window).await?;
            lq.sql(sql).await
        })
        .with_context(|| format!("cannot read {}", lake.display()))?;
    let mut found = 0u64;
    let mut toml = String::new();
    for b in &batches {
        let utf8 = |c: usize| arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Utf8);
        let (user, keys) = (utf8(0)?, utf8(4)?);
        let (user, keys) = (user.as_string::<i32>(), keys.as_string::<i32>());
        let (events, identities, claims) = (
            b.column(1).as_primitive::<Int64Type>(),
            b.column(2).as_primitive::<Int64Type>(),
            b.column(3).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            let name = user.value(i);
            if profiles.proxy_for(name).is_some() || found >= limit {
                continue;
            }
            found += 1;
            let with_claims = claims.value(i);
            let claimed = keys
                .is_valid(i)
                .then(|| keys.value(i))
                .and_then(|ks| profiles.claimed_by(|k| ks.split(' ').any(|x| x == k)))
                .map(|p| p.name.as_str());
            println!(
                "{name}\n  {} events acting as {} identities, {with_claims} carrying a proxy's claim",
                events.value(i),
                identities.value(i)
            );
            match claimed {
                Some(profile) if with_claims > 0 && !name.starts_with("system:serviceaccount:") => {
                    println!("  carries the claim keys of profile `{profile}` but is not a service account, as a proxy is: most likely forging it (see --named spoofed-malformed-claims)");
                }
                Some(profile) if with_claims > 0 => {
                    println!("  carries the claim keys of profile `{profile}`: if this is your {profile}, add it to that profile's proxy_usernames");
                    toml.push_str(&format!(
                        "# [[profile]] name = \"{profile}\": proxy_usernames = [..., \"{name}\"]\n"
                    ));
                }
                _ => {
                    println!("  sends no claim: a forwarding proxy (then trust it under [forwarders]) or someone using impersonation directly");
                    let key: String = name
                        .rsplit(':')
                        .next()
                        .unwrap_or(name)
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || c == '-' {
                                c
                            } else {
                                '-'
                            }
                        })
                        .collect();
                    toml.push_str(&format!("# {key} = [\"{name}\"]   # under [forwarders]\n"));
                }
            }
        }
    }
    if found == 0 {
        println!(
            "no untrusted identity impersonates others in {}{}",
            lake.display(),
            if window.is_everything() {
                ""
            } else {
                " in this window"
            }
        );
    } else {
        println!("\nprofile lines to review (nothing is trusted until you add them):\n{toml}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_describes_every_kind_of_profile() {
        let text = describe(&Profiles::builtin());
        for want in [
            "pinniped\n  trusts: `system:serviceaccount:pinniped-concierge:pinniped-concierge-impersonation-proxy`",
            "a JSON UserInfo in impersonatedUser.extra[\"original-user-info.impersonation-proxy.concierge.pinniped.dev\"]",
            "kube-oidc-proxy\n  trusts: nobody (inactive",
            "groups in [\"originaluser.jetstack.io-groups\"]",
            "client address: extra[\"remote-client-ip\"]",
            "(pattern)",
            "gitlab-agent\n  trusts: nobody",
            "the user in impersonatedUser.extra[\"agent.gitlab.com/username\"]",
            "karmada\n  trusts: `system:serviceaccount:karmada-cluster:karmada-impersonator`\n  caller: none",
        ] {
            assert!(text.contains(want), "`{want}` not in:\n{text}");
        }
    }
}
