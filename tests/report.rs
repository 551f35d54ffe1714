//! `auditlake report`: the actor report as a ticket sees it (a Markdown snapshot), as a
//! script reads it (JSON), and as a person opens it: the HTML page loaded by a real headless
//! browser (Debian's chromium; tests/run.sh installs it) with the network cut off, which must
//! render the diagram and tables without a console error; its screenshot is kept as an
//! artefact under the build's tmp directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn fixture_lake(dir: &Path) -> std::path::PathBuf {
    let lake = dir.join("lake");
    let log = dir.join("gen.log");
    gen_file(&log, 3000, 21);
    ingest(
        &lake,
        &["--cluster", "fixture"],
        &[&fixture("identities.jsonl"), &log],
    );
    lake
}

fn report(lake: &Path, args: &[&str]) -> String {
    let lake_s = lake.display().to_string();
    let mut all = vec!["report", "--lake", lake_s.as_str()];
    all.extend(args);
    String::from_utf8(run(&all).stdout).expect("utf-8")
}

#[test]
fn markdown_and_json_reports_answer_who_and_how() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = fixture_lake(dir.path());
    // carol reached the cluster through Pinniped's nested impersonation and acted as ops-bot.
    let md = report(&lake, &["--actor", "carol@example.com", "--format", "md"]);
    let stable: String = md
        .replace(&lake.display().to_string(), "LAKE")
        .lines()
        .map(|l| {
            if l.starts_with("Lake `LAKE`") {
                l.split(" Generated ").next().unwrap_or(l).to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("report-carol", stable));
    assert!(md.contains("as ops-bot"), "{md}");

    let json: serde_json::Value = serde_json::from_str(&report(
        &lake,
        &["--actor", "alice@example.com", "--format", "json"],
    ))
    .expect("json");
    let requests = json["requests"].as_u64().expect("requests");
    let counted = scalar(
        &lake,
        "SELECT count(*) FROM requests WHERE actor_username = 'alice@example.com'",
    );
    assert_eq!(
        requests.to_string(),
        counted,
        "the report counts what requests holds"
    );
    let chains: u64 = json["chains"]
        .as_array()
        .expect("chains")
        .iter()
        .map(|c| c["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(chains, requests, "every request is on one chain");
    let hours: u64 = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(hours, requests, "every request is in the timeline");
    assert!(json["tables"].as_array().unwrap().len() >= 6);

    fails_with(
        &[
            "report",
            "--lake",
            lake.to_str().unwrap(),
            "--actor",
            "nobody@example.com",
        ],
        "no request by actor `nobody@example.com`",
    );
}

#[test]
fn the_html_report_renders_offline_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = fixture_lake(dir.path());
    let page = dir.path().join("alice.html");
    run(&[
        "report",
        "--lake",
        lake.to_str().unwrap(),
        "--actor",
        "alice@example.com",
        "-o",
        page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    for forbidden in [
        "<script", "@import", " src=", " href=", "<link", "<iframe", "<object",
    ] {
        assert!(
            !html.contains(forbidden),
            "the page must need nothing else: {forbidden}"
        );
    }
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium (tests/run.sh installs Debian's chromium package)");
    let profile = dir.path().join("profile");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-alice.png");
    let _ = std::fs::remove_file(&shot);
    let browser = |extra: &[String]| {
        Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                // The network is cut off: any fetch the page tried would fail and be logged.
                "--proxy-server=127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1280,1800",
                "--virtual-time-budget=3000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("run chromium")
    };
    let dom = browser(&["--dump-dom".into()]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let rendered = String::from_utf8_lossy(&dom.stdout);
    assert!(rendered.contains("What <code>alice@example.com</code> did"));
    assert!(
        rendered.matches("<rect").count() >= 5,
        "the diagram and the timeline are drawn"
    );
    assert!(rendered.contains("<table>"));
    let stderr = String::from_utf8_lossy(&dom.stderr);
    for line in stderr.lines() {
        assert!(
            !(line.contains("CONSOLE") || line.contains("Uncaught") || line.contains("Refused to")),
            "the browser reported: {line}"
        );
    }
    let out = browser(&[format!("--screenshot={}", shot.display())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a blank page compresses to almost nothing: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

/// Without `--actor`, the report is a cluster's overview: the four named queries an
/// investigation starts from, each as `auditlake query --named` answers it.
#[test]
fn the_cluster_overview_holds_the_named_queries_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = fixture_lake(dir.path());
    let json: serde_json::Value = serde_json::from_str(&report(
        &lake,
        &["--cluster", "fixture", "--format", "json"],
    ))
    .expect("json");
    let tables = json["tables"].as_array().expect("tables");
    let names: Vec<&str> = tables
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "proxy-summary",
            "who-acted-as-whom",
            "spoofed-malformed-claims",
            "privileged-impersonation"
        ]
    );
    for t in tables {
        let name = t["title"].as_str().unwrap();
        let rows = query_csv(&lake, &["--named", name, "--cluster", "fixture"]);
        assert_eq!(
            t["total"].as_u64().unwrap() as usize,
            rows.len() - 1,
            "{name}"
        );
        assert!(rows.len() > 1, "{name} has an answer on the fixture");
    }
    let md = report(&lake, &["--cluster", "fixture", "--format", "md"]);
    assert!(md.starts_with("# Who acted in cluster fixture"), "{md}");
    fails_with(
        &[
            "report",
            "--lake",
            lake.to_str().unwrap(),
            "--cluster",
            "elsewhere",
        ],
        "no request in",
    );
    // Neither --actor nor --cluster: every cluster's overview, whose
    // tables are the named queries over the whole lake.
    let all: serde_json::Value =
        serde_json::from_str(&report(&lake, &["--format", "json"])).expect("json");
    assert!(all["cluster"].is_null(), "{all}");
    for t in all["tables"].as_array().expect("tables") {
        let name = t["title"].as_str().unwrap();
        let rows = query_csv(&lake, &["--named", name]);
        assert_eq!(
            t["total"].as_u64().unwrap() as usize,
            rows.len() - 1,
            "{name}"
        );
    }
    let md = report(&lake, &["--format", "md"]);
    assert!(md.starts_with("# Who acted in every cluster"), "{md}");

    // A cluster whose requests are all direct: an overview of empty tables, each with its
    // columns, not an error.
    let direct = dir.path().join("direct.jsonl");
    let line = std::fs::read_to_string(fixture("identities.jsonl"))
        .expect("fixture")
        .lines()
        .find(|l| l.contains("\"auditID\":\"id-direct\""))
        .expect("the fixture's direct request")
        .to_string();
    std::fs::write(&direct, line + "\n").expect("write");
    let only_direct = dir.path().join("direct-lake");
    ingest(&only_direct, &["--cluster", "quiet"], &[&direct]);
    let quiet: serde_json::Value =
        serde_json::from_str(&report(&only_direct, &["--format", "json"])).expect("json");
    assert_eq!(quiet["stored_rows"], 1, "{quiet}");
    assert_eq!(quiet["requests"], 0, "{quiet}");
    for t in quiet["tables"].as_array().expect("tables") {
        assert_eq!(t["total"], 0, "{t}");
        assert!(!t["columns"].as_array().expect("columns").is_empty(), "{t}");
    }
}
