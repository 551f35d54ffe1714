//! `auditlake demo`: synthetic traffic with every identity scenario → a lake → three named
//! queries, so a newcomer sees the answers before pointing it at real logs.

use super::{ingest, runtime};
use anyhow::{bail, Context, Result};
use arrow::array::Array;
use auditlake::profiles::Profiles;
use auditlake::query::{self, OutputFormat};
use auditlake::sinks::lake::WriteOptions;
use auditlake::tools::gen::{Format, Generator, OIDC_PROXY_SA};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

const EXAMPLES: &str =
    "Examples:\n  auditlake demo\n  auditlake demo --lake /tmp/lake --events 100000";

/// Generate demo traffic, ingest it and show what the lake answers.
///
/// Writes a synthetic audit stream covering every identity scenario
/// (direct users, service accounts, nodes, kubectl --as, Pinniped plain
/// and nested, kube-oidc-proxy, Rancher, Azure Arc, spoofed and
/// malformed claims) into a lake, then runs three named queries.
/// Running it again reuses what is already committed.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Lake directory to create or reuse.
    #[arg(long, env = "AUDITLAKE_LAKE", default_value = "./auditlake-demo")]
    lake: PathBuf,
    /// Number of demo events.
    #[arg(long, env = "AUDITLAKE_DEMO_EVENTS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
}

pub fn run(a: Args) -> Result<()> {
    let lake = a.lake.as_path();
    let started = Instant::now();
    std::fs::create_dir_all(lake).with_context(|| format!("cannot create {}", lake.display()))?;
    let input = lake.join("_demo-input.jsonl");
    if !input.exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input)?);
        Generator::new(42).write(a.events, Format::JsonLines, 400, &mut out)?;
        out.flush()?;
    }
    // The demo traffic includes kube-oidc-proxy, whose identity has no
    // default: name it, as a user would in their profiles file.
    let mut profiles = Profiles::builtin();
    if !profiles.add_proxy_username("kube-oidc-proxy", OIDC_PROXY_SA) {
        bail!("built-in profiles lack kube-oidc-proxy");
    }
    let summaries = ingest::ingest_files(
        lake,
        Some("demo"),
        Default::default(),
        profiles,
        super::WorkerArgs::default().get(),
        WriteOptions::default(),
        true,
        &[input],
    )?;
    ingest::print_summary(&summaries.done);
    if let Some(e) = summaries.unreadable.first() {
        bail!("{e}");
    }
    let rt = runtime()?;
    rt.block_on(async {
        let mut lq = query::LakeQuery::open(lake, &query::OpenOptions::default()).await?;
        // Each table shows every kind of row among its 12: each proxy's
        // chains, plain and nested, each claim status.
        for (name, params, columns) in [
            (
                "who-acted-as-whom",
                vec![],
                &["proxy_profile", "resolution"][..],
            ),
            (
                "actor-via-proxy",
                vec!["actor=alice@example.com".to_string()],
                &["proxy_profile", "resolution"][..],
            ),
            ("spoofed-malformed-claims", vec![], &["claim_status"][..]),
        ] {
            let q = query::find_named(name)?;
            let sql = lq
                .named(
                    &q,
                    &query::parse_params(&params)?,
                    &query::Window::default(),
                )
                .await?;
            let batches = varied_rows(lq.sql(&sql).await?, columns, 12)?;
            println!("\n## {name}: {}", q.question);
            println!("{}", query::render(&batches, OutputFormat::Table)?);
        }
        anyhow::Ok(())
    })?;
    let l = lake.display();
    println!(
        "\nDemo lake at {l} ({:.1}s). Try:\n  auditlake queries\n  auditlake query --lake {l} --named privileged-impersonation\n  auditlake query --lake {l} --named actor-timeline --param actor=carol@example.com\n  auditlake query --lake {l} \"SELECT resolution, claim_status, COUNT(*) FROM requests GROUP BY 1, 2 ORDER BY 3 DESC\"",
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// At most `n` rows of `batches`, in their order, chosen so that every
/// combination of `columns` shows: the first row of each, then the first
/// rows left. (The first 12 rows of who-acted-as-whom are the busiest
/// chains, all plain proxy ones; the nested Pinniped chain, the reason the
/// tool exists, came 20th.)
fn varied_rows(
    batches: Vec<arrow::record_batch::RecordBatch>,
    columns: &[&str],
    n: usize,
) -> Result<Vec<arrow::record_batch::RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    let all = arrow::compute::concat_batches(&first.schema(), &batches)?;
    let mut keys = Vec::new();
    for c in columns {
        if let Ok(i) = all.schema().index_of(c) {
            keys.push(arrow::compute::cast(
                all.column(i),
                &arrow::datatypes::DataType::Utf8,
            )?);
        }
    }
    let keys: Vec<&arrow::array::StringArray> = keys
        .iter()
        .filter_map(|k| k.as_any().downcast_ref::<arrow::array::StringArray>())
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut chosen: Vec<u32> = Vec::new();
    for i in 0..all.num_rows() {
        let key: Vec<Option<&str>> = keys
            .iter()
            .map(|k| k.is_valid(i).then(|| k.value(i)))
            .collect();
        if chosen.len() < n && seen.insert(key) {
            chosen.push(i as u32);
        }
    }
    for i in 0..all.num_rows() as u32 {
        if chosen.len() >= n {
            break;
        }
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    let idx = arrow::array::UInt32Array::from(chosen);
    Ok(vec![arrow::compute::take_record_batch(&all, &idx)?])
}
