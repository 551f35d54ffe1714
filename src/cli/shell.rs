//! `auditlake shell`: an interactive SQL shell on a lake opened once.
//!
//! Start-up does what every `auditlake query` does (lists the lake, reads its Delta log,
//! mirrors an object-store lake, registers the relations); each statement after that reuses
//! the open lake, so a question costs what its query costs.
//!
//! Invariants:
//! - Ctrl-C while a statement runs cancels that statement only: its future is dropped, which
//!   stops DataFusion's tasks, and the shell is back at its prompt with the lake still open.
//!   Ctrl-C at the prompt drops what was being typed. Ctrl-D, `.quit` and `.exit` leave.
//! - A statement ends with `;` outside quotes and comments; until then Enter continues it on a
//!   new line. A line starting with `.` is a shell command and ends at its line.
//! - Every statement and command is added to a history file (one per user, kept across
//!   sessions) as soon as it is entered, so a shell that is killed loses none of it.
//! - Results on a terminal are capped like `auditlake query`'s tables (`.maxrows`,
//!   `.maxwidth`); csv, json and line output, and any output to a file, are never capped.

use super::query::WindowArgs;
use super::{bytes_in, now_us, runtime};
use anyhow::{Context as _, Result};
use auditlake::query::{self, LakeQuery, NamedQuery, OutputFormat, TableLimits, Window};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Editor, Helper};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

const EXAMPLES: &str = "Examples:\n  auditlake shell --lake L\n  auditlake shell --lake L --since 7d --cluster prod-eu-1\n  auditlake shell --lake L < investigation.sql\n\nIn the shell:\n  SELECT actor_username, count(*) FROM requests\n    GROUP BY 1 ORDER BY 2 DESC;\n  .named actor-timeline actor=alice@example.com --since 24h\n  .mode csv\n  .output alice.csv\n  .help";

const HELP: &str = "\
SQL statements end with `;` (Enter before it continues the statement). Relations: audit,
audit_events, requests, audit_id_reuse (and lake.* without the shell's window). Shell commands:
  .tables                      the relations, one line each
  .schema [TABLE]              columns of TABLE (default requests), types and descriptions
  .named                       the named queries and their parameters
  .named NAME [k=v ...] [--since T] [--until T] [--cluster C]
                               run one; its window defaults to the shell's
  .window [--since T] [--until T] [--cluster C]
                               show, or set, the window every statement sees (`.window
                               --since ''` clears since)
  .mode table|csv|json|line    how results are printed
  .maxrows N / .maxwidth N     cap tables at N rows / N characters a cell (0: no cap)
  .timer on|off                print how long each statement took
  .output [FILE]               write results to FILE (no FILE: back to the terminal)
  .help                        this text
  .quit / .exit / Ctrl-D       leave
Ctrl-C cancels the running statement (or clears the line being typed). Tab completes tables,
columns, named queries and shell commands. Up and Down recall earlier statements.";

/// An interactive SQL shell on the lake: statements, named queries and output settings, with
/// history, completion and Ctrl-C to cancel a query.
///
/// The lake is opened once; every statement reuses it. A statement ends with `;`. Lines
/// starting with `.` are shell commands (`.help` lists them). Standard input that is not a
/// terminal is read as a script, statement by statement.
///
/// History is saved in --history (default $XDG_STATE_HOME/auditlake/history, or
/// ~/.local/state/auditlake/history).
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Lake directory or object-store URL.
    #[arg(long, env = "AUDITLAKE_LAKE")]
    lake: PathBuf,
    #[command(flatten)]
    window: WindowArgs,
    /// Your own named queries: every `NAME.sql` in this directory (see `auditlake query
    /// --queries`), beside the shipped ones.
    #[arg(long, env = "AUDITLAKE_QUERIES", value_name = "DIR")]
    queries: Option<PathBuf>,
    /// Memory the query engine may hold (see `auditlake query --memory-limit`).
    #[arg(long, env = "AUDITLAKE_MEMORY_LIMIT", default_value = "1GiB",
          value_parser = bytes_in(1 << 20, 1 << 50))]
    memory_limit: u64,
    /// The history file (`-`: keep no history).
    #[arg(long, env = "AUDITLAKE_HISTORY", value_name = "FILE")]
    history: Option<PathBuf>,
}

/// What `.mode`, `.timer`, `.output`, `.maxrows`, `.maxwidth` and `.window` set.
struct Settings {
    format: OutputFormat,
    timer: bool,
    output: Option<(PathBuf, std::fs::File)>,
    rows: Option<usize>,
    width: Option<usize>,
    /// The shell's window, with the strings it was typed as.
    window: WindowSpec,
}

impl Settings {
    fn limits(&self) -> TableLimits {
        if self.output.is_some() || !std::io::stdout().is_terminal() {
            return TableLimits::default();
        }
        TableLimits {
            rows: self.rows,
            width: self.width,
            show_all: Some("`.maxrows 0` shows all; `.mode csv` or `.mode json` is never capped"),
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let window = a.window.window()?;
    let mine = match &a.queries {
        Some(dir) => query::load_dir(dir)?,
        None => Vec::new(),
    };
    let named: Vec<NamedQuery> = query::named_queries().into_iter().chain(mine).collect();
    let opts = query::OpenOptions {
        memory_limit: usize::try_from(a.memory_limit).unwrap_or(usize::MAX),
        ..Default::default()
    };
    let rt = runtime()?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("auditlake shell: opening {} …", a.lake.display());
    }
    let mut lq = rt.block_on(async {
        let mut lq = LakeQuery::open(&a.lake, &opts).await?;
        lq.set_window(&window).await?;
        anyhow::Ok(lq)
    })?;
    // Installed once, before the first statement: from here on SIGINT cancels a statement
    // instead of ending the process.
    let mut interrupt = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("installing the SIGINT handler")
    })?;
    let columns: Vec<String> = auditlake::schema::column_names()
        .map(str::to_string)
        .chain(["dt".to_string(), "hour".to_string()])
        .collect();
    let helper = ShellHelper {
        named: named.iter().map(|q| q.name.to_string()).collect(),
        columns,
    };
    let config = rustyline::Config::builder()
        .max_history_size(10_000)
        .map_err(|e| anyhow::anyhow!("history size: {e}"))?
        .auto_add_history(false)
        .history_ignore_space(true)
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut rl: Editor<ShellHelper, DefaultHistory> =
        Editor::with_config(config).context("cannot start the line editor")?;
    rl.set_helper(Some(helper));
    let history = history_path(a.history);
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match rl.load_history(h) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: history {} not read: {e}", h.display()),
        }
    }
    if interactive {
        eprintln!(
            "{} named queries; `.help` for shell commands, statements end with `;`",
            named.len()
        );
    }
    let mut s = Settings {
        format: OutputFormat::Table,
        timer: false,
        output: None,
        rows: Some(40),
        width: Some(60),
        window: WindowSpec {
            window,
            since: a.window.since.clone(),
            until: a.window.until.clone(),
            cluster: a.window.cluster.clone(),
        },
    };
    let mut pending = String::new();
    // In a script, errors name the line their statement starts on.
    let (mut line_no, mut started_at) = (0usize, 0usize);
    let place = |at: usize| {
        if interactive {
            String::new()
        } else {
            format!(" (line {at})")
        }
    };
    loop {
        let prompt = if pending.is_empty() {
            "auditlake> "
        } else {
            "       ...> "
        };
        let line = match rl.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading the terminal"),
        };
        line_no += 1;
        if pending.is_empty() && line.trim_start().starts_with('.') {
            remember(&mut rl, &history, line.trim());
            match command(line.trim(), &rt, &mut lq, &named, &mut s, &mut interrupt) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => break,
                Err(e) => eprintln!("error{}: {e:#}", place(line_no)),
            }
            continue;
        }
        if pending.is_empty() {
            if line.trim().is_empty() {
                continue;
            }
            started_at = line_no;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !statement_complete(&pending) {
            continue;
        }
        let sql = std::mem::take(&mut pending);
        let sql = sql.trim();
        remember(&mut rl, &history, sql);
        if let Err(e) = statement(sql, &rt, &lq, &s, &mut interrupt) {
            eprintln!("error{}: {e:#}", place(started_at));
        }
    }
    if !pending.trim().is_empty() {
        eprintln!(
            "warning{}: the last statement has no `;` and was not run",
            place(started_at)
        );
    }
    Ok(())
}

/// Where the history lives: `--history`, else the XDG state directory; `-` for none.
fn history_path(given: Option<PathBuf>) -> Option<PathBuf> {
    match given {
        Some(p) if p.as_os_str() == "-" => None,
        Some(p) => Some(p),
        None => std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .map(|d| d.join("auditlake/history")),
    }
}

/// Add an entry to the history and write the file at once (a killed shell keeps it).
fn remember(rl: &mut Editor<ShellHelper, DefaultHistory>, file: &Option<PathBuf>, entry: &str) {
    if entry.is_empty() || rl.add_history_entry(entry).is_err() {
        return;
    }
    if let Some(f) = file {
        if let Err(e) = rl.save_history(f) {
            eprintln!("warning: history {} not written: {e}", f.display());
        }
    }
}

enum Flow {
    Continue,
    Quit,
}

/// Run one SQL statement, cancelled by Ctrl-C.
fn statement(
    sql: &str,
    rt: &tokio::runtime::Runtime,
    lq: &LakeQuery,
    s: &Settings,
    interrupt: &mut tokio::signal::unix::Signal,
) -> Result<()> {
    use futures::FutureExt;
    // A SIGINT that arrived while no statement ran is not this statement's.
    while interrupt.recv().now_or_never().is_some() {}
    let started = Instant::now();
    let limits = s.limits();
    let outcome = rt.block_on(async {
        let stdout = std::io::stdout();
        let mut terminal;
        let mut file;
        let out: &mut dyn Write = match &s.output {
            Some((_, f)) => {
                file = std::io::BufWriter::new(f);
                &mut file
            }
            None => {
                terminal = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
                &mut terminal
            }
        };
        let result = tokio::select! {
            r = lq.write_sql(sql, s.format, limits, out, false) => Some(r),
            _ = interrupt.recv() => None,
        };
        let _ = out.flush();
        result
    });
    match outcome {
        None => {
            println!();
            eprintln!("cancelled after {:.3} s", started.elapsed().as_secs_f64());
        }
        Some(Err(e)) => return Err(e.into()),
        Some(Ok((rows, _))) => {
            if s.output.is_some() {
                eprintln!("{rows} rows written");
            }
            if s.timer {
                eprintln!("Run Time: {:.3} s", started.elapsed().as_secs_f64());
            }
        }
    }
    Ok(())
}

/// One `.command` line.
fn command(
    line: &str,
    rt: &tokio::runtime::Runtime,
    lq: &mut LakeQuery,
    named: &[NamedQuery],
    s: &mut Settings,
    interrupt: &mut tokio::signal::unix::Signal,
) -> Result<Flow> {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or_default();
    let rest: Vec<&str> = words.collect();
    match name {
        ".quit" | ".exit" => return Ok(Flow::Quit),
        ".help" => println!("{HELP}"),
        ".tables" => {
            for (t, what) in query::RELATIONS.iter().zip(query::RELATION_MEANINGS) {
                println!("{t:<15} {what}");
            }
        }
        ".schema" => schema(rest.first().copied().unwrap_or("requests"), rt, lq)?,
        ".mode" => {
            let v = rest.first().copied().unwrap_or("");
            s.format = <OutputFormat as clap::ValueEnum>::from_str(v, true).map_err(|_| {
                anyhow::anyhow!("`.mode {v}`: the modes are table, csv, json and line")
            })?;
        }
        ".timer" => {
            s.timer = match rest.first().copied() {
                Some("on") => true,
                Some("off") => false,
                _ => anyhow::bail!("`.timer on` or `.timer off`"),
            }
        }
        ".maxrows" | ".maxwidth" => {
            let n: usize = rest
                .first()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("`{name} N`: N is a number (0: no cap)"))?;
            let cap = (n > 0).then_some(n);
            if name == ".maxrows" {
                s.rows = cap;
            } else {
                s.width = cap;
            }
        }
        ".output" => match rest.first() {
            None => {
                if let Some((path, _)) = s.output.take() {
                    eprintln!("results to the terminal again ({} closed)", path.display());
                }
            }
            Some(path) => {
                let path = PathBuf::from(path);
                let f = std::fs::File::create(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                eprintln!(
                    "results to {} (`.output` alone: back to the terminal)",
                    path.display()
                );
                s.output = Some((path, f));
            }
        },
        ".window" => {
            let (flags, params) = split_flags(&rest)?;
            if !params.is_empty() {
                anyhow::bail!("`.window` takes only --since, --until and --cluster");
            }
            if !flags.is_empty() {
                let w = window_with(s, &flags)?;
                rt.block_on(lq.set_window(&w.window))?;
                s.window = w;
            }
            let w = &s.window;
            println!(
                "since {}, until {}, cluster {}",
                w.since.as_deref().unwrap_or("(none)"),
                w.until.as_deref().unwrap_or("(none)"),
                w.cluster.as_deref().unwrap_or("(all)")
            );
        }
        ".named" => {
            let Some(q) = rest.first() else {
                for q in named {
                    let params: Vec<String> = q
                        .params
                        .iter()
                        .map(|p| match &p.default {
                            Some(d) => format!("[{}={d}]", p.name),
                            None => format!("{}=…", p.name),
                        })
                        .collect();
                    println!("{} {}\n    {}", q.name, params.join(" "), q.question);
                }
                return Ok(Flow::Continue);
            };
            let q = query::find_named_in(q, named)?;
            let (flags, params) = split_flags(&rest[1..])?;
            let params: Vec<String> = params.into_iter().map(str::to_string).collect();
            let params = query::parse_params(&params)?;
            let window = window_with(s, &flags)?.window;
            // The query's own message names `auditlake query`'s flag; here a parameter is
            // written `key=value`.
            let sql = rt
                .block_on(lq.named(&q, &params, &window))
                .map_err(|e| anyhow::anyhow!(e.to_string().replace("--param ", "")))?;
            let run = statement(&sql, rt, lq, s, interrupt);
            // The named query may have widened the relations (history queries): back to the
            // shell's window for what follows.
            rt.block_on(lq.set_window(&s.window.window))?;
            run?;
        }
        other => anyhow::bail!("unknown command `{other}` (`.help` lists them)"),
    }
    Ok(Flow::Continue)
}

/// `(flag, value)` pairs of `.window`'s and `.named`'s `--since`/`--until`/`--cluster`.
type Flags<'a> = Vec<(&'a str, &'a str)>;

/// The window a `.window` or `.named` would run under, with the strings it came from (the
/// shell shows them back as typed).
struct WindowSpec {
    window: Window,
    since: Option<String>,
    until: Option<String>,
    cluster: Option<String>,
}

/// `--since T`, `--until T`, `--cluster C` (or `--since=T`) apart from the other words.
fn split_flags<'a>(words: &[&'a str]) -> Result<(Flags<'a>, Vec<&'a str>)> {
    let (mut flags, mut rest) = (Vec::new(), Vec::new());
    let mut it = words.iter();
    while let Some(&w) = it.next() {
        let Some(flag) = w.strip_prefix("--") else {
            rest.push(w);
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, v),
            None => (
                flag,
                *it.next()
                    .with_context(|| format!("`--{flag}` needs a value"))?,
            ),
        };
        match name {
            "since" | "until" | "cluster" => flags.push((name, value.trim_matches('\''))),
            _ => anyhow::bail!("unknown flag `--{name}` (--since, --until and --cluster are)"),
        }
    }
    Ok((flags, rest))
}

/// The shell's window with `flags` applied (an empty value clears one).
fn window_with(s: &Settings, flags: &[(&str, &str)]) -> Result<WindowSpec> {
    let w = &s.window;
    let (mut since, mut until, mut cluster) = (w.since.clone(), w.until.clone(), w.cluster.clone());
    for &(name, value) in flags {
        let v = (!value.is_empty()).then(|| value.to_string());
        match name {
            "since" => since = v,
            "until" => until = v,
            _ => cluster = v,
        }
    }
    let w = Window::new(
        cluster.clone(),
        since.as_deref(),
        until.as_deref(),
        now_us(),
    )?;
    Ok(WindowSpec {
        window: w,
        since,
        until,
        cluster,
    })
}

/// `.schema TABLE`: the relation's columns, with `auditlake schema`'s descriptions.
fn schema(table: &str, rt: &tokio::runtime::Runtime, lq: &LakeQuery) -> Result<()> {
    let described = auditlake::schema::schema_document();
    let description = |name: &str| -> String {
        described["columns"]
            .as_array()
            .and_then(|cols| cols.iter().find(|c| c["name"] == name))
            .and_then(|c| c["description"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let provider = rt
        .block_on(lq.context().table_provider(table))
        .map_err(|_| {
            anyhow::anyhow!(
                "no relation `{table}`: the relations are {}",
                query::RELATIONS.join(", ")
            )
        })?;
    for f in provider.schema().fields() {
        println!(
            "{:<34} {:<28} {}",
            f.name(),
            f.data_type().to_string(),
            description(f.name())
        );
    }
    Ok(())
}

/// Whether `text` holds a whole statement: its last character outside string literals,
/// quoted identifiers and comments is `;`.
fn statement_complete(text: &str) -> bool {
    let mut last = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // To the closing quote; a doubled quote is an escaped one.
                let mut closed = false;
                while let Some(d) = chars.next() {
                    if d == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                            continue;
                        }
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return false;
                }
                last = Some(c);
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                let mut closed = false;
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        closed = true;
                        break;
                    }
                    prev = d;
                }
                if !closed {
                    return false;
                }
            }
            c if c.is_whitespace() => {}
            c => last = Some(c),
        }
    }
    last == Some(';')
}

const COMMANDS: &[&str] = &[
    ".exit",
    ".help",
    ".maxrows",
    ".maxwidth",
    ".mode",
    ".named",
    ".output",
    ".quit",
    ".schema",
    ".tables",
    ".timer",
    ".window",
];
const TABLES: &[&str] = &query::RELATIONS;
const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "LIMIT", "HAVING", "DISTINCT", "COUNT",
    "AND", "OR", "NOT", "LIKE", "ILIKE", "IN", "IS", "NULL", "AS", "ASC", "DESC", "JOIN", "LEFT",
    "ON", "WITH", "UNION", "ALL", "CASE", "WHEN", "THEN", "ELSE", "END", "BETWEEN", "INTERVAL",
    "EXPLAIN",
];

/// Completion for the line editor.
struct ShellHelper {
    named: Vec<String>,
    columns: Vec<String>,
}

impl ShellHelper {
    /// (start of the word before `pos`, candidates for it).
    fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let command = before.trim_start().starts_with('.');
        let word_char =
            |c: char| c.is_alphanumeric() || c == '_' || (command && (c == '-' || c == '.'));
        let start = before
            .char_indices()
            .rev()
            .find(|&(_, c)| !word_char(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &before[start..];
        let first = before[..start].trim().is_empty();
        let pool: Vec<String> = if command && first {
            COMMANDS.iter().map(|c| c.to_string()).collect()
        } else if command {
            match before.split_whitespace().next() {
                Some(".named") => self.named.clone(),
                Some(".schema") => TABLES.iter().map(|t| t.to_string()).collect(),
                Some(".mode") => ["table", "csv", "json", "line"].map(String::from).to_vec(),
                Some(".timer") => ["on", "off"].map(String::from).to_vec(),
                _ => Vec::new(),
            }
        } else if before[..start]
            .split_whitespace()
            .next_back()
            .is_some_and(|w| w.eq_ignore_ascii_case("from") || w.eq_ignore_ascii_case("join"))
        {
            // After FROM or JOIN only a relation fits: `reque` must not stop at the common
            // prefix `request` it shares with the request_* columns.
            TABLES.iter().map(|t| t.to_string()).collect()
        } else {
            let lower = word.chars().all(|c| !c.is_uppercase());
            TABLES
                .iter()
                .map(|t| t.to_string())
                .chain(self.columns.iter().cloned())
                .chain(KEYWORDS.iter().map(|k| {
                    if lower {
                        k.to_lowercase()
                    } else {
                        k.to_string()
                    }
                }))
                .collect()
        };
        let mut found: Vec<String> = pool
            .into_iter()
            .filter(|c| c.to_lowercase().starts_with(&word.to_lowercase()) && !word.is_empty())
            .collect();
        found.sort();
        found.dedup();
        (start, found)
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, found) = self.candidates(line, pos);
        Ok((
            start,
            found
                .into_iter()
                .map(|c| Pair {
                    display: c.clone(),
                    replacement: c,
                })
                .collect(),
        ))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

// Statements are gathered line by line by the loop in `run` (with its `...>` prompt), the
// same way on a terminal and from a script, so the editor's own multi-line mode stays off.
impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_at_a_semicolon_outside_quotes_and_comments() {
        for (text, complete) in [
            ("SELECT 1;", true),
            ("SELECT 1", false),
            ("SELECT 1;  \n", true),
            ("SELECT ';'", false),
            ("SELECT 'it''s';", true),
            ("SELECT 'open;", false),
            ("SELECT 1 -- done;", false),
            ("SELECT 1; -- done", true),
            ("SELECT \"a;b\" FROM t", false),
            ("SELECT /* ; */ 1", false),
            ("SELECT /* ; */ 1;", true),
            ("SELECT /* open ;", false),
            ("", false),
        ] {
            assert_eq!(statement_complete(text), complete, "{text:?}");
        }
    }

    #[test]
    fn completion_offers_commands_tables_columns_and_named_queries() {
        let h = ShellHelper {
            named: vec!["actor-timeline".into(), "actor-via-proxy".into()],
            columns: vec!["actor_username".into(), "request_uri".into(), "verb".into()],
        };
        for (line, start, want) in [
            (".na", 0, vec![".named"]),
            (".named actor-t", 7, vec!["actor-timeline"]),
            (".schema req", 8, vec!["requests"]),
            (".mode c", 6, vec!["csv"]),
            ("SELECT actor_u", 7, vec!["actor_username"]),
            ("select count(*) from req", 21, vec!["requests"]),
            ("SELECT a FROM audit a JOIN req", 27, vec!["requests"]),
            ("SELECT req", 7, vec!["request_uri", "requests"]),
            ("sel", 0, vec!["select"]),
            ("SEL", 0, vec!["SELECT"]),
            ("SELECT ", 7, vec![]),
        ] {
            let (s, found) = h.candidates(line, line.len());
            assert_eq!(
                (s, found),
                (start, want.iter().map(|w| w.to_string()).collect()),
                "{line:?}"
            );
        }
    }

    #[test]
    fn shell_flags_split_from_parameters() {
        let (flags, rest) =
            split_flags(&["actor=a", "--since", "24h", "--cluster=prod"]).expect("flags");
        assert_eq!(flags, vec![("since", "24h"), ("cluster", "prod")]);
        assert_eq!(rest, vec!["actor=a"]);
        assert!(split_flags(&["--since"]).is_err());
        assert!(split_flags(&["--limit", "3"]).is_err());
    }
}
