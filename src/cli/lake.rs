//! `auditlake lake …`: maintenance of a lake in place: `convert` (the older layout into a
//! Delta table), `vacuum`, `reset`, `reresolve` (a proxy-profile fix applied to rows already
//! stored), and the forensic `verify` (tamper evidence) and `history` (the commits).

use super::{now_us, ProfileArgs};
use anyhow::{bail, Context, Result};
use auditlake::sinks::lake::reresolve::{reresolve, Hours};
use auditlake::sinks::lake::{Lake, WriteOptions};
use std::io::Write;
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:\n  auditlake lake convert L   # once, for a lake written before the Delta log\n  auditlake lake verify L    # prints the head to keep as an anchor\n  auditlake lake verify L --anchor 41:9f2c…   # the head an earlier run printed\n  auditlake lake history L --last 20\n  auditlake lake reresolve L --profiles fixed.toml --dry-run\n  auditlake lake reresolve L --profiles fixed.toml --since 2026-11-01\n  auditlake profiles suggest --lake L   # first: the identity a profile misses";

/// Maintain a lake in place.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Turn a lake of the older layout into a Delta table, in place.
    ///
    /// Lakes written before the Delta log keep each source's position in
    /// `_state/`. This names every live Parquet file in a new
    /// `_delta_log/` and records each source's position in the same
    /// first commit, so every source resumes where it stood and nothing is
    /// re-ingested. Files are not moved or rewritten. Stop the lake's
    /// writers first; queries may keep running. Running it again on a
    /// converted lake does nothing.
    Convert {
        /// Lake directory.
        #[arg(value_name = "LAKE", env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
    },
    /// Delete the files that are no longer part of the lake.
    ///
    /// Files compaction replaced, partitions retention removed, and the
    /// leftovers of interrupted commits stay on disk (auditlake never reads
    /// them; plain Parquet readers of `**/*.parquet` do) until this
    /// deletes them, once each has been out of the table for --min-age.
    /// A file the Delta log names is never deleted.
    Vacuum {
        /// Lake directory.
        #[arg(value_name = "LAKE", env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
        /// Delete a file only once it has been out of the table this long
        /// (`1h`, `30m`, `7d`); a query that started before it left keeps
        /// reading it meanwhile.
        #[arg(long, env = "AUDITLAKE_VACUUM_MIN_AGE", default_value = "1h")]
        min_age: String,
        /// Count what would be deleted; delete nothing.
        #[arg(long, env = "AUDITLAKE_VACUUM_DRY_RUN")]
        dry_run: bool,
    },
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
    /// Set a source's position in the lake's log (default: back to the start).
    ///
    /// A source resumes after the position the Delta log records for it.
    /// After a Kafka topic is deleted and created again, its offsets start
    /// at 0 and the old positions would skip the new messages: reset each
    /// partition's source (`k.<topic>.<partition>`). Stop the source's
    /// writer first. Files are not touched.
    Reset {
        /// Lake directory.
        #[arg(value_name = "LAKE", env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
        /// The source id, as in the lake's file names: `k.<topic>.<partition>`,
        /// `f<hash>` (a file), `w<instance>` (a webhook's log).
        #[arg(long, env = "AUDITLAKE_RESET_SOURCE")]
        source: String,
        /// The position to record (0: read from the start).
        #[arg(long, env = "AUDITLAKE_RESET_TO", default_value_t = 0)]
        to: u64,
    },
    /// Prove that the lake's files and log are as auditlake wrote them.
    ///
    /// Every commit records the SHA-256 of each file it adds and of the
    /// log entry before it. This re-reads the log and every live file and
    /// reports, one line each (`KIND<TAB>NAME<TAB>DETAIL`): a file changed
    /// (`changed`), deleted (`missing`) or added (`stray`) outside
    /// auditlake, a log entry changed or deleted (`broken-link`,
    /// `missing-entry`), a checkpoint that disagrees with the entries.
    /// Exits 1 when it finds any, 0 when none. The newest entry has no
    /// successor to vouch for it: keep the head this prints where the
    /// lake's writers cannot change it, and pass it back with --anchor.
    Verify {
        /// Lake directory.
        #[arg(value_name = "LAKE", env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
        /// `VERSION:SHA256`, the head an earlier run printed: fails if that
        /// entry changed or the log was cut short before it.
        #[arg(long, env = "AUDITLAKE_VERIFY_ANCHOR")]
        anchor: Option<String>,
    },
    /// List the lake's commits: version, time, operation, writer, files
    /// added and removed, rows added, the source positions it recorded.
    ///
    /// Query the lake as it stood at one of them with
    /// `auditlake query --as-of VERSION`.
    History {
        /// Lake directory.
        #[arg(value_name = "LAKE", env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
        /// Only the newest N commits.
        #[arg(long, env = "AUDITLAKE_HISTORY_LAST")]
        last: Option<usize>,
    },
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

/// A `1h`-style age as a duration (parsed as a time back from `now`).
pub fn age(flag: &'static str, value: &str, now: i64) -> Result<std::time::Duration> {
    let then = auditlake::query::window::parse_time(flag, value, now)?;
    Ok(std::time::Duration::from_micros(
        now.saturating_sub(then).max(0) as u64,
    ))
}

pub fn run(a: Args) -> Result<()> {
    match a.action {
        Action::Vacuum {
            lake,
            min_age,
            dry_run,
        } => {
            if !super::is_lake(&lake) {
                bail!("{} is not a lake directory", lake.display());
            }
            let age = age("--min-age", &min_age, now_us())?;
            let l = Lake::open(&lake, WriteOptions::default())
                .with_context(|| format!("cannot open lake {}", lake.display()))?;
            let v = auditlake::sinks::lake::vacuum::vacuum(&l, age, dry_run)?;
            eprintln!(
                "{}: {} files {}deleted ({} MiB); {} out of the table for less than {min_age} kept",
                lake.display(),
                v.deleted,
                if dry_run { "would be " } else { "" },
                v.bytes >> 20,
                v.kept_young,
            );
            Ok(())
        }
        Action::Verify { lake, anchor } => verify(&lake, anchor.as_deref()),
        Action::History { lake, last } => history(&lake, last),
        Action::Convert { lake } => {
            if auditlake::sinks::lake::store::is_remote(&lake) {
                bail!(
                    "{}: `lake convert` converts a directory of the older layout in place; convert it on its disk, then copy it to the store",
                    lake.display()
                );
            }
            if !lake.is_dir() {
                bail!("{} is not a lake directory", lake.display());
            }
            let c = auditlake::sinks::lake::convert::convert(&lake)
                .with_context(|| format!("cannot convert lake {}", lake.display()))?;
            if !c.converted {
                eprintln!("{}: already a Delta table; nothing to do", lake.display());
                return Ok(());
            }
            eprintln!(
                "{}: converted: {} files ({} rows, {} bytes) named by the new Delta log; {} sources keep their positions{}",
                lake.display(),
                c.files,
                c.rows,
                c.bytes,
                c.positions.len(),
                if c.abandoned > 0 {
                    format!(
                        "; {} files of interrupted commits removed (their positions are read again)",
                        c.abandoned
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Action::Reset { lake, source, to } => {
            if !super::is_lake(&lake) {
                bail!("{} is not a lake directory", lake.display());
            }
            let l = Lake::open(&lake, WriteOptions::default())
                .with_context(|| format!("cannot open lake {}", lake.display()))?;
            let _lock = l.lock(&source, "lake reset")?;
            let was = l.log().position(&source)?;
            let Some(was) = was else {
                bail!(
                    "the lake has no source `{source}`; its file names (`<source>-<first>-<last>`) and `_delta_log/` entries name the ones it has"
                );
            };
            l.log().commit(auditlake::sinks::lake::delta::Change {
                positions: vec![(source.clone(), to)],
                ..Default::default()
            })?;
            // The state's copy follows the log.
            l.recover(&source, "lake reset", auditlake::sinks::lake::Resume::Last)?;
            eprintln!(
                "{}: source {source}: position {was} -> {to}",
                lake.display()
            );
            Ok(())
        }
        Action::Reresolve {
            lake,
            profiles,
            since,
            until,
            dry_run,
        } => {
            if !super::is_lake(&lake) {
                bail!("{} is not a lake directory", lake.display());
            }
            let profiles = profiles.load()?;
            let w =
                auditlake::query::Window::new(None, since.as_deref(), until.as_deref(), now_us())?;
            let l = Lake::open(&lake, WriteOptions::default())
                .with_context(|| format!("cannot open lake {}", lake.display()))?;
            l.local_only(
                "lake reresolve",
                "reresolve a local copy, or run it where the lake is a directory",
            )?;
            // Two runs at once would rewrite the same files.
            let _lock = l.lock("reresolve", "lake reresolve")?;
            let hours = Hours {
                since_us: w.since,
                until_us: w.until,
            };
            let r = reresolve(&l, &profiles, hours, dry_run)?;
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

fn verify(lake: &std::path::Path, anchor: Option<&str>) -> Result<()> {
    use auditlake::sinks::lake::verify;
    if !super::is_lake(lake) {
        bail!("{} is not a lake directory", lake.display());
    }
    let anchor = match anchor {
        None => None,
        Some(a) => {
            let (v, h) = a.split_once(':').with_context(|| {
                format!("--anchor {a}: expected VERSION:SHA256, as `lake verify` prints the head")
            })?;
            let v: u64 = v
                .parse()
                .with_context(|| format!("--anchor {a}: `{v}` is not a version number"))?;
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("--anchor {a}: `{h}` is not a SHA-256 (64 hex digits)");
            }
            Some((v, h.to_ascii_lowercase()))
        }
    };
    let started = std::time::Instant::now();
    let r = verify::verify(lake, anchor)?;
    let secs = started.elapsed().as_secs_f64();
    for f in &r.findings {
        println!("{}", f.line());
    }
    for rel in &r.leftovers {
        eprintln!(
            "note: {rel}: left by an interrupted commit (its writer deletes it on restart, `lake vacuum` after --min-age)"
        );
    }
    if r.unlinked > 0 {
        eprintln!(
            "note: {} log entries were written before the log had a hash chain; they are not covered",
            r.unlinked
        );
    }
    if r.unhashed > 0 {
        eprintln!(
            "note: {} live files were added without a recorded SHA-256; only their sizes were checked",
            r.unhashed
        );
    }
    eprintln!(
        "{}: {} log entries, {} live files, {} MiB hashed in {secs:.1} s",
        lake.display(),
        r.entries,
        r.files_checked,
        r.bytes_hashed >> 20,
    );
    if let Some((v, h)) = &r.head {
        // On stdout only when clean, so a script can keep it: `lake verify L > anchor`.
        if r.findings.is_empty() {
            println!("head\t{v}:{h}");
        } else {
            eprintln!("head {v}:{h}");
        }
    }
    if !r.findings.is_empty() {
        bail!(
            "{} findings: the lake was changed outside auditlake; restore the named files (or the log entries) from a backup, and find who had write access",
            r.findings.len()
        );
    }
    Ok(())
}

fn history(named: &std::path::Path, last: Option<usize>) -> Result<()> {
    use auditlake::sinks::lake::verify;
    if !auditlake::sinks::lake::delta::exists(named) {
        bail!(
            "{} has no Delta log (not a lake, or one of the older layout: `auditlake lake convert` it)",
            named.display()
        );
    }
    // On an object store the entries are read from a copy of the log, brought up to date.
    let copied = match auditlake::sinks::lake::store::remote(named)? {
        Some(r) => Some(r.sync_log()?),
        None => None,
    };
    let lake = copied.as_deref().unwrap_or(named);
    let versions = verify::versions(lake)?;
    let skip = last.map_or(0, |n| versions.len().saturating_sub(n));
    let mut out = std::io::stdout().lock();
    // `lake history L | head` closes the pipe early: that ends the listing, not an error.
    let mut say = |line: String| match writeln!(out, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
        Ok(()) => Ok(true),
    };
    if !say(
        "version\ttime\toperation\twriter\tfiles_added\tfiles_removed\trows_added\tpositions"
            .into(),
    )? {
        return Ok(());
    }
    for v in versions.into_iter().skip(skip) {
        let Some(e) = verify::read_entry(lake, v)? else {
            continue;
        };
        let time = e
            .timestamp
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| "-".into());
        let positions = if e.positions.is_empty() {
            "-".to_string()
        } else {
            e.positions
                .iter()
                .map(|(s, p)| format!("{s}={p}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let line = format!(
            "{}\t{time}\t{}\t{}\t{}\t{}\t{}\t{positions}",
            e.version,
            e.operation.as_deref().unwrap_or("-"),
            e.writer.as_deref().unwrap_or("-"),
            e.adds.len(),
            e.removes.len(),
            e.rows_added(),
        );
        if !say(line)? {
            break;
        }
    }
    Ok(())
}
