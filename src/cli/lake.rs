//! `auditlake lake …`: maintenance of a lake in place. For now `reresolve`, which applies a
//! proxy-profile fix to rows already stored.

use super::{now_us, ProfileArgs};
use anyhow::{bail, Context, Result};
use auditlake::sinks::lake::reresolve::{reresolve, Hours};
use auditlake::sinks::lake::{Lake, WriteOptions};
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:\n  auditlake lake reresolve L --profiles fixed.toml --dry-run\n  auditlake lake reresolve L --profiles fixed.toml --since 2026-11-01\n  auditlake profiles suggest --lake L   # first: the identity a profile misses";

/// Maintain a lake in place.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Recompute who acted in stored rows with other proxy profiles.
    ///
    /// After fixing a profile (a proxy installed under another name,
    /// found with `auditlake profiles suggest`), re-ingesting the same
    /// files stores nothing new: this recomputes the resolution columns
    /// (actor, original caller, proxy, resolution, claim status,
    /// provenance) of the rows already in the lake from their stored
    /// identities, and rewrites each file in which a value changes,
    /// atomically. Other columns are kept as they are. Writers may keep
    /// running: they add files, this rewrites only files it listed.
    Reresolve {
        /// Lake directory.
        #[arg(value_name = "LAKE", env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
        #[command(flatten)]
        profiles: ProfileArgs,
        /// Only hour partitions at or after this time (RFC 3339, a date,
        /// or a span back from now: `24h`, `7d`).
        #[arg(long, env = "AUDITLAKE_SINCE")]
        since: Option<String>,
        /// Only hour partitions before this time.
        #[arg(long, env = "AUDITLAKE_UNTIL")]
        until: Option<String>,
        /// Count what would change; write nothing.
        #[arg(long, env = "AUDITLAKE_DRY_RUN")]
        dry_run: bool,
    },
}

pub fn run(a: Args) -> Result<()> {
    match a.action {
        Action::Reresolve {
            lake,
            profiles,
            since,
            until,
            dry_run,
        } => {
            if !lake.is_dir() {
                bail!("{} is not a lake directory", lake.display());
            }
            let profiles = profiles.load()?;
            let w =
                auditlake::query::Window::new(None, since.as_deref(), until.as_deref(), now_us())?;
            let l = Lake::open(&lake, WriteOptions::default())
                .with_context(|| format!("cannot open lake {}", lake.display()))?;
            // Two runs at once would rewrite the same files.
            let _lock = l.lock("reresolve", "lake reresolve")?;
            let hours = Hours {
                since_us: w.since,
                until_us: w.until,
            };
            let r = reresolve(&lake, &profiles, hours, dry_run)?;
            eprintln!(
                "{}: {} files read ({} rows); {} rows resolve differently, in {} files{}",
                lake.display(),
                r.files_read,
                r.rows_read,
                r.rows_changed,
                r.files_rewritten,
                if dry_run {
                    " (dry run: nothing written)"
                } else if r.files_rewritten > 0 {
                    " rewritten"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}
