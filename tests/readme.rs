//! The README's commands stay true: every command of its shell blocks runs (in a temporary
//! directory, in order, so the walkthrough builds the lake it then queries), and every flag its
//! commands table names is one the command accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;
use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// Split a shell line into words: spaces separate, single and double quotes group, `#` after a
/// space starts a comment. Enough for the README, which uses no expansions in these commands.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                any = true;
            }
            (None, '#') if cur.is_empty() => break,
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The auditlake commands of the README's `sh` blocks, as argument lists.
fn shell_commands(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let w = words(line);
        match w.first().map(String::as_str) {
            Some("auditlake") => out.push(w[1..].to_vec()),
            Some("cargo") if w.get(1).map(String::as_str) == Some("run") => {
                let at = w.iter().position(|x| x == "--").expect("cargo run -- ARGS");
                out.push(w[at + 1..].to_vec());
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_readme_walkthrough_runs() {
    let text = readme();
    let commands = shell_commands(&text);
    assert!(commands.len() >= 10, "found only {commands:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    for args in &commands {
        let out = Command::new(bin())
            .args(args)
            .current_dir(dir.path())
            .env_remove("AUDITLAKE_LAKE")
            .output()
            .expect("spawn auditlake");
        assert!(
            out.status.success(),
            "README command `auditlake {}` failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        // The demo's tables show the nested Pinniped chain, the case the tool exists for,
        // however busy the plain proxy chains are.
        if args.first().map(String::as_str) == Some("demo") {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let chains = stdout
                .split("## ")
                .find(|s| s.starts_with("who-acted-as-whom"))
                .expect("the demo shows who-acted-as-whom");
            assert!(
                chains
                    .lines()
                    .any(|l| l.contains("| pinniped ") && l.contains("| proxy_nested ")),
                "no nested Pinniped chain among the demo's rows:\n{chains}"
            );
        }
        // A query that answers nothing shows nothing: the walkthrough must show something.
        if args.first().map(String::as_str) == Some("query") {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.lines().count() > 1 && !stdout.contains("0 rows"),
                "README command `auditlake {}` answered nothing:\n{stdout}",
                args.join(" ")
            );
        }
    }
}

#[test]
fn the_commands_table_names_real_flags() {
    let text = readme();
    let mut checked = 0;
    for line in text.lines().filter(|l| l.starts_with("| `auditlake ")) {
        let cell = line.split('`').nth(1).expect("a command in backticks");
        let w = words(&cell.replace("\\|", " "));
        // `auditlake profiles check …`: the flags are the nested command's.
        let nested = w
            .get(2)
            .filter(|x| x.chars().all(|c| c.is_ascii_lowercase()))
            .filter(|x| {
                std::process::Command::new(bin())
                    .args([w[1].as_str(), x.as_str(), "--help"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
        let mut path: Vec<&str> = vec![w[1].as_str()];
        path.extend(nested.map(String::as_str));
        let sub = path.join(" ");
        path.push("--help");
        let help = run(&path);
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        for flag in w.iter().map(|x| x.trim_start_matches('[')) {
            if let Some(name) = flag.strip_prefix("--") {
                let name = name.trim_end_matches(']').split('=').next().unwrap_or(name);
                assert!(
                    help.contains(&format!("--{name}")),
                    "the README's `{cell}` names --{name}, which `auditlake {sub}` does not take"
                );
                checked += 1;
            } else if flag.starts_with('-') && flag.len() == 2 {
                assert!(
                    help.contains(&format!("{flag},")) || help.contains(&format!("{flag} ")),
                    "`{cell}`: {flag}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "checked only {checked} flags");
}

#[test]
fn words_split_like_a_shell() {
    let cases: &[(&str, &[&str])] = &[
        ("a b  c", &["a", "b", "c"]),
        ("q \"x y\" 'z w'", &["q", "x y", "z w"]),
        ("run # a comment", &["run"]),
        ("a ''", &["a", ""]),
    ];
    for (line, want) in cases {
        assert_eq!(words(line), *want, "{line}");
    }
}
