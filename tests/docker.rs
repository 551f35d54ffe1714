//! The docker/ deliverables, checked without a container engine: every
//! auditlake command line in compose.yaml uses flags the binary knows.

mod common;
use common::run;

#[test]
fn compose_commands_use_real_flags() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/compose.yaml");
    let text = std::fs::read_to_string(&path).expect("compose.yaml");
    // `command:` followed by `- item` lines, as the file writes them.
    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text.lines() {
        let t = line.trim();
        if t == "command:" {
            current = Some(Vec::new());
            continue;
        }
        if let Some(items) = current.as_mut() {
            if let Some(item) = t.strip_prefix("- ") {
                items.push(item.to_string());
                continue;
            }
            commands.extend(current.take());
        }
    }
    commands.extend(current.take());
    let subcommands: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(
        subcommands,
        ["serve", "consume"],
        "compose.yaml commands changed"
    );
    for cmd in &commands {
        let help = String::from_utf8_lossy(&run(&[&cmd[0], "--help"]).stdout).into_owned();
        for arg in &cmd[1..] {
            let flag = arg.split('=').next().unwrap_or_default();
            assert!(flag.starts_with("--"), "{arg}: expected --flag=value");
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "`auditlake {} {flag}` is not a flag:\n{help}",
                cmd[0]
            );
        }
    }
}
