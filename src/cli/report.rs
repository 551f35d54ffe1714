//! `auditlake report`: what one actor did and how they got in, as one self-contained HTML
//! page, Markdown or JSON.

use super::query::WindowArgs;
use super::runtime;
use anyhow::{bail, Context, Result};
use auditlake::query::{self, report};
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:\n  auditlake report --lake ./auditlake-demo --actor carol@example.com -o carol.html\n  auditlake report --lake L --cluster prod --since 24h -o prod.html   # who acted, through what\n  auditlake report --lake L --actor alice@example.com --since 7d --format md > ticket.md\n  auditlake report --lake L --actor alice@example.com --format json | jq .chains";

/// Report what one actor did, and how they got in.
///
/// Gathers, for the actor (the resolved `actor_username`, the human
/// behind any proxy): the identity chains they acted through (the
/// proxy or impersonation hop, the identity they acted as, counts,
/// first and last seen), their requests per hour by verb class (read,
/// write, delete, exec/attach/port-forward, denied), and tables of
/// sensitive actions, denied attempts, clusters and namespaces, source
/// IPs and user agents, credentials, and spoofed or malformed claims
/// naming them. Every request row carries its audit_id (`auditlake
/// explain` takes it). The HTML page needs nothing but itself: no
/// script, no font, no network.
///
/// Without --actor, an overview of --cluster (or of every cluster): the
/// named queries an investigation starts from (proxy-summary,
/// who-acted-as-whom, spoofed-malformed-claims,
/// privileged-impersonation), in the same formats.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Lake directory.
    #[arg(long, env = "AUDITLAKE_LAKE")]
    lake: PathBuf,
    /// The actor: a resolved `actor_username` (`auditlake query --named
    /// who-acted-as-whom` lists them). Without it, the overview of
    /// --cluster, or of every cluster.
    #[arg(long, env = "AUDITLAKE_REPORT_ACTOR")]
    actor: Option<String>,
    #[command(flatten)]
    window: WindowArgs,
    /// html (one self-contained page), md (for a ticket) or json.
    #[arg(long, env = "AUDITLAKE_REPORT_FORMAT", value_enum, default_value_t = Format::Html)]
    format: Format,
    /// Write here instead of standard output.
    #[arg(short, long, env = "AUDITLAKE_REPORT_OUTPUT")]
    output: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Html,
    Md,
    Json,
}

pub fn run(a: Args) -> Result<()> {
    let window = a.window.window()?;
    let since = window.since.map(query::window::format_us);
    let until = window.until.map(query::window::format_us);
    let lake_name = a.lake.display().to_string();
    // On an object store, only the window's partitions are fetched.
    let opts = query::OpenOptions {
        fetch_within: Some(window.clone()),
        ..Default::default()
    };
    let Some(actor) = a.actor.clone() else {
        let o = runtime()?.block_on(async {
            let mut lq = query::LakeQuery::open(&a.lake, &opts).await?;
            anyhow::Ok(report::overview(&mut lq, &window, &lake_name, since, until).await?)
        })?;
        if o.stored_rows == 0 {
            bail!(
                "no request in {lake_name} for this cluster and window; `auditlake query --lake {lake_name} \"SELECT cluster, count(*) FROM audit GROUP BY 1\"` lists the clusters"
            );
        }
        let text = match a.format {
            Format::Html => report::overview_html(&o),
            Format::Md => report::overview_markdown(&o),
            Format::Json => serde_json::to_string_pretty(&o)? + "\n",
        };
        return emit(a.output.as_deref(), &text, || {
            format!(
                "{} rows stored, {} requests through a proxy or impersonation by {} actors; gathered in {:.2} s",
                o.stored_rows, o.requests, o.actors, o.query_seconds
            )
        });
    };
    let r = runtime()?.block_on(async {
        let mut lq = query::LakeQuery::open(&a.lake, &opts).await?;
        lq.set_window(&window).await?;
        anyhow::Ok(report::gather(&lq, &actor, &lake_name, since, until).await?)
    })?;
    if r.requests == 0 {
        bail!(
            "no request by actor `{}` in {} in this window; actors are resolved usernames (the human behind a proxy): `auditlake query --lake {} --named who-acted-as-whom` lists them",
            actor,
            lake_name,
            lake_name
        );
    }
    let text = match a.format {
        Format::Html => report::html(&r),
        Format::Md => report::markdown(&r),
        Format::Json => serde_json::to_string_pretty(&r)? + "\n",
    };
    emit(a.output.as_deref(), &text, || {
        format!(
            "{} requests by {}, {} chains; gathered in {:.2} s",
            r.requests,
            r.actor,
            r.chains.len(),
            r.query_seconds
        )
    })
}

/// Write `text` to `output` (saying what it holds) or to standard output.
fn emit(output: Option<&std::path::Path>, text: &str, what: impl Fn() -> String) -> Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{}: {}", path.display(), what());
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
        }
    }
    Ok(())
}
