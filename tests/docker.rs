//! The docker/ deliverables, checked without a container engine: every
//! auditlake command line in compose.yaml uses flags the binary knows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

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

/// The image's build step runs repository scripts (`bash benches/pgo.sh`):
/// each must exist, be part of the build context (not in `.dockerignore`),
/// and print the binary's path on its last line, which the step copies.
#[test]
fn dockerfile_build_scripts_are_in_the_context() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("docker/Dockerfile")).expect("Dockerfile");
    let ignored: Vec<String> = std::fs::read_to_string(root.join(".dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let scripts: Vec<&str> = dockerfile
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "bash")
        .map(|w| w[1])
        .collect();
    assert_eq!(scripts, ["benches/pgo.sh"], "Dockerfile's scripts changed");
    for script in scripts {
        let text = std::fs::read_to_string(root.join(script))
            .unwrap_or_else(|e| panic!("{script}, run by the Dockerfile: {e}"));
        let top = script.split('/').next().unwrap_or_default();
        assert!(
            !ignored.iter().any(|i| i == top || i == script),
            "{script} is excluded from the build context by .dockerignore"
        );
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        assert!(
            last.is_some_and(|l| l.starts_with("echo \"$TARGET-pgo-use/")),
            "{script} must print the built binary's path last, the Dockerfile copies it: {last:?}"
        );
    }
    for dir in ["target", ".git"] {
        assert!(
            ignored.iter().any(|i| i == dir),
            "{dir} should stay out of the build context"
        );
    }
}

/// The auditlake command lines of docker/k8s/*.yaml (`args:` lists) use flags the binary
/// knows; the follow DaemonSet runs on control-plane nodes and mounts the log directory.
#[test]
fn k8s_manifests_use_real_flags() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/k8s");
    let mut seen = Vec::new();
    for name in ["auditlake.yaml", "follow-daemonset.yaml"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("manifest");
        let mut args: Vec<String> = Vec::new();
        let mut inside = false;
        for line in text.lines() {
            let t = line.trim();
            if t == "args:" {
                inside = true;
                continue;
            }
            if inside {
                match t.strip_prefix("- ") {
                    Some(item) => args.push(item.to_string()),
                    None => inside = false,
                }
            }
        }
        assert!(!args.is_empty(), "{name}: no args");
        let help = String::from_utf8_lossy(&run(&[&args[0], "--help"]).stdout).into_owned();
        for arg in &args[1..] {
            if !arg.starts_with("--") {
                // A positional argument (the followed file): the command must take FILE.
                assert!(
                    help.contains("<FILE>"),
                    "{name}: `{arg}` but no FILE argument"
                );
                continue;
            }
            let flag = arg.split('=').next().unwrap_or_default();
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "{name}: `auditlake {} {flag}` is not a flag",
                args[0]
            );
        }
        seen.push((name, args, text));
    }
    let (_, args, text) = &seen[1];
    assert_eq!(&args[..2], ["ingest", "--follow"]);
    for needle in [
        "kind: DaemonSet",
        "node-role.kubernetes.io/control-plane: \"\"",
        "key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule",
        "hostPath: {path: /var/log/kubernetes/audit, type: Directory}",
        "httpGet: {path: /readyz, port: metrics}",
    ] {
        assert!(
            text.contains(needle),
            "follow-daemonset.yaml lacks `{needle}`"
        );
    }
    let followed = args.last().expect("file");
    assert!(
        followed.starts_with("/var/log/kubernetes/audit/"),
        "the followed file must be under the mounted directory: {followed}"
    );
}
