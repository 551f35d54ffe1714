//! The named forensic queries: `queries/*.sql`, embedded at build time, and the user's own
//! from a directory (`--queries DIR`), in the same format. A user's query never replaces a
//! shipped one: a file with a shipped query's name is refused, so a question an investigator
//! relies on cannot be changed behind their back.
//!
//! A header of `--` comments states the question and declares parameters:
//! - `-- param: NAME -- description`: required (a parameter that names the
//!   subject of the question, an actor or a credential, has no default: a
//!   demo value would silently answer a question nobody asked);
//! - `-- param: NAME = DEFAULT -- description`: optional;
//! - `-- window: history`: the question needs the rows before `--since`
//!   (the relations are then restricted by `--until` and `--cluster` only,
//!   and the body compares against `{{since}}` itself).
//!
//! The body refers to parameters as `{{NAME}}`, replaced in one pass by a
//! quoted SQL string literal (so a value that contains `{{other}}` stays
//! text). `{{since}}` and `{{until}}` are the window's bounds as timestamp
//! expressions.

use super::window::Window;
use super::QueryError;
use std::collections::BTreeMap;

/// The named queries shipped in `queries/`.
pub const NAMED: &[(&str, &str)] = &[
    (
        "actor-via-proxy",
        include_str!("../../queries/actor-via-proxy.sql"),
    ),
    (
        "who-acted-as-whom",
        include_str!("../../queries/who-acted-as-whom.sql"),
    ),
    (
        "privileged-impersonation",
        include_str!("../../queries/privileged-impersonation.sql"),
    ),
    (
        "secrets-by-humans",
        include_str!("../../queries/secrets-by-humans.sql"),
    ),
    (
        "exec-attach-portforward",
        include_str!("../../queries/exec-attach-portforward.sql"),
    ),
    (
        "spoofed-malformed-claims",
        include_str!("../../queries/spoofed-malformed-claims.sql"),
    ),
    (
        "rbac-changes",
        include_str!("../../queries/rbac-changes.sql"),
    ),
    (
        "tokens-minted",
        include_str!("../../queries/tokens-minted.sql"),
    ),
    (
        "credential-usage",
        include_str!("../../queries/credential-usage.sql"),
    ),
    (
        "denied-per-actor",
        include_str!("../../queries/denied-per-actor.sql"),
    ),
    (
        "anonymous-allowed",
        include_str!("../../queries/anonymous-allowed.sql"),
    ),
    (
        "token-unexpected-pod",
        include_str!("../../queries/token-unexpected-pod.sql"),
    ),
    (
        "events-deleted",
        include_str!("../../queries/events-deleted.sql"),
    ),
    (
        "first-seen-actors",
        include_str!("../../queries/first-seen-actors.sql"),
    ),
    (
        "actor-timeline",
        include_str!("../../queries/actor-timeline.sql"),
    ),
    (
        "proxy-summary",
        include_str!("../../queries/proxy-summary.sql"),
    ),
    (
        "audit-id-reuse",
        include_str!("../../queries/audit-id-reuse.sql"),
    ),
];

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// `None`: required.
    pub default: Option<String>,
    pub description: String,
}

/// A parsed named query.
#[derive(Debug, Clone)]
pub struct NamedQuery {
    pub name: &'static str,
    pub question: String,
    pub params: Vec<Param>,
    /// `-- window: history` (see the module doc).
    pub needs_history: bool,
    pub body: &'static str,
}

/// Names the body may use without declaring them.
const IMPLICIT: &[&str] = &["since", "until"];

impl NamedQuery {
    /// The window its relations read under `window`: a query that needs history sees
    /// everything before `--until`.
    pub fn relations_window(&self, window: &Window) -> Window {
        if self.needs_history {
            window.without_since()
        } else {
            window.clone()
        }
    }

    pub fn parse(name: &'static str, text: &'static str) -> NamedQuery {
        let mut question = String::new();
        let mut params = Vec::new();
        let mut needs_history = false;
        for line in text.lines() {
            let Some(c) = line.strip_prefix("--") else {
                break;
            };
            let c = c.trim();
            if let Some(q) = c.strip_prefix("question:") {
                question = q.trim().to_string();
            } else if let Some(w) = c.strip_prefix("window:") {
                needs_history = w.trim() == "history";
            } else if let Some(p) = c.strip_prefix("param:") {
                let (decl, desc) = p.split_once("--").unwrap_or((p, ""));
                let (pname, default) = match decl.split_once('=') {
                    Some((n, d)) => (n, Some(d.trim().to_string())),
                    None => (decl, None),
                };
                params.push(Param {
                    name: pname.trim().to_string(),
                    default,
                    description: desc.trim().to_string(),
                });
            }
        }
        NamedQuery {
            name,
            question,
            params,
            needs_history,
            body: text,
        }
    }

    /// The SQL with parameters substituted (`given` overrides defaults) and
    /// `{{since}}`/`{{until}}` taken from `window`.
    pub fn render(
        &self,
        given: &BTreeMap<String, String>,
        window: &Window,
    ) -> Result<String, QueryError> {
        let known = || {
            self.params
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for k in given.keys() {
            if !self.params.iter().any(|p| &p.name == k) {
                let known = known();
                return Err(QueryError::UnknownParam {
                    query: self.name.to_string(),
                    param: k.clone(),
                    known: if known.is_empty() {
                        "none".to_string()
                    } else {
                        known
                    },
                    window: IMPLICIT.contains(&k.as_str()),
                });
            }
        }
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        for p in &self.params {
            let v = match (given.get(&p.name), &p.default) {
                (Some(v), _) => v.clone(),
                (None, Some(d)) => d.clone(),
                (None, None) => {
                    return Err(QueryError::MissingParam {
                        query: self.name.to_string(),
                        param: p.name.clone(),
                        description: p.description.clone(),
                    })
                }
            };
            values.insert(p.name.as_str(), sql_literal(&v));
        }
        values.entry("since").or_insert_with(|| window.since_sql());
        values.entry("until").or_insert_with(|| window.until_sql());
        // One pass over the body: a substituted value is never scanned again.
        let mut out = String::with_capacity(self.body.len());
        let mut rest = self.body;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                out.push_str(&rest[open..]);
                rest = "";
                break;
            };
            let name = after[..close].trim();
            match values.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(QueryError::UndeclaredPlaceholder {
                        query: self.name.to_string(),
                        name: name.to_string(),
                    })
                }
            }
            rest = &after[close + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A SQL string literal.
pub fn sql_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

pub fn named_queries() -> Vec<NamedQuery> {
    NAMED.iter().map(|(n, t)| NamedQuery::parse(n, t)).collect()
}

pub fn find_named(name: &str) -> Result<NamedQuery, QueryError> {
    find_named_in(name, &[])
}

/// The shipped query `name`, or one of `extra` (a user's directory).
pub fn find_named_in(name: &str, extra: &[NamedQuery]) -> Result<NamedQuery, QueryError> {
    named_queries()
        .into_iter()
        .chain(extra.iter().cloned())
        .find(|q| q.name == name)
        .ok_or_else(|| QueryError::UnknownQuery(name.to_string()))
}

/// The user's named queries: every `NAME.sql` in `dir`, checked as they load (a name of
/// letters, digits, `-` and `_` not taken by a shipped query; a question; no placeholder the
/// header does not declare), sorted by name.
pub fn load_dir(dir: &std::path::Path) -> Result<Vec<NamedQuery>, QueryError> {
    let problem = |path: &std::path::Path, problem: String| QueryError::UserQuery {
        path: path.display().to_string(),
        problem,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| problem(dir, format!("cannot list: {e}")))?;
    let mut out: Vec<NamedQuery> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
            return Err(problem(&path, "the file name is not UTF-8".into()));
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(problem(
                &path,
                "a query's name (the file name without .sql) may hold letters, digits, - and _ only".into(),
            ));
        }
        if NAMED.iter().any(|(n, _)| *n == name) {
            return Err(problem(
                &path,
                format!("`{name}` is the name of a shipped query, which a user's query may not replace; rename the file"),
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| problem(&path, format!("cannot read: {e}")))?;
        // Loaded once per process and kept to its end, as the shipped ones are (the type
        // holds `&'static str`): a few kilobytes per file.
        let q = NamedQuery::parse(
            Box::leak(name.to_string().into_boxed_str()),
            Box::leak(text.into_boxed_str()),
        );
        if q.question.is_empty() {
            return Err(problem(
                &path,
                "no `-- question: …` line in its header; the first lines of a named query are `--` comments: `-- question: …`, then `-- param: NAME -- description` for each parameter".into(),
            ));
        }
        let given = q
            .params
            .iter()
            .map(|p| (p.name.clone(), "x".to_string()))
            .collect();
        let window = Window::new(None, None, None, 0)?;
        if let Err(e) = q.render(&given, &window) {
            return Err(problem(&path, e.to_string()));
        }
        out.push(q);
    }
    out.sort_by(|a, b| a.name.cmp(b.name));
    Ok(out)
}

/// Parse `key=value` parameters.
pub fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>, QueryError> {
    raw.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| QueryError::BadParam(p.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_query_file_is_registered_and_documented() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("queries dir")
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".sql"))
                    .map(str::to_string)
            })
            .collect();
        files.sort();
        let mut names: Vec<String> = NAMED.iter().map(|n| n.0.to_string()).collect();
        names.sort();
        assert_eq!(files, names, "queries/ and query::NAMED differ");
        assert!(names.len() >= 17);
        for q in named_queries() {
            assert!(!q.question.is_empty(), "{} has no question header", q.name);
            let mut given = BTreeMap::new();
            for p in &q.params {
                assert!(
                    q.body.contains(&format!("{{{{{}}}}}", p.name)),
                    "{}: {} unused",
                    q.name,
                    p.name
                );
                assert!(
                    !p.description.is_empty(),
                    "{}: {} undocumented",
                    q.name,
                    p.name
                );
                given.insert(p.name.clone(), "x".to_string());
            }
            let rendered = q.render(&given, &Window::default()).expect("renders");
            assert!(!rendered.contains("{{"), "{}: unreplaced parameter", q.name);
        }
    }

    #[test]
    fn subjects_are_required() {
        // A question about one actor or credential has no default subject.
        for (name, param) in [
            ("actor-via-proxy", "actor"),
            ("actor-timeline", "actor"),
            ("credential-usage", "credential"),
        ] {
            let q = find_named(name).expect("query");
            let e = q
                .render(&BTreeMap::new(), &Window::default())
                .expect_err("a subject is required");
            let msg = e.to_string();
            assert!(msg.contains(&format!("--param {param}=")), "{msg}");
        }
    }

    #[test]
    fn params_are_quoted_and_substituted_once() {
        let q = NamedQuery::parse(
            "t",
            "-- question: q\n-- param: actor -- who\n-- param: other = b -- other\nSELECT {{actor}}, {{ other }}",
        );
        let w = Window::default();
        let mut given = BTreeMap::new();
        given.insert("actor".to_string(), "o'brien".to_string());
        assert_eq!(
            q.render(&given, &w).expect("render"),
            "-- question: q\n-- param: actor -- who\n-- param: other = b -- other\nSELECT 'o''brien', 'b'"
        );
        // A value that looks like a placeholder stays a literal.
        given.insert("actor".to_string(), "{{other}}' OR '1'='1".to_string());
        let sql = q.render(&given, &w).expect("render");
        assert!(
            sql.ends_with("SELECT '{{other}}'' OR ''1''=''1', 'b'"),
            "{sql}"
        );
        given.insert("nope".to_string(), "x".to_string());
        assert!(q.render(&given, &w).is_err());
        let e = q
            .render(
                &BTreeMap::from([("since".to_string(), "x".to_string())]),
                &w,
            )
            .expect_err("since is a flag");
        assert!(e.to_string().contains("--since"), "{e}");
    }
}
