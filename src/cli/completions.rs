//! `auditlake completions SHELL` and `auditlake man`: shell completion scripts and a man page,
//! generated from the same definitions as `--help`, so they cannot drift from it.

use anyhow::Result;
use clap::CommandFactory;

const COMPLETIONS_EXAMPLES: &str = "Examples:\n  auditlake completions bash > ~/.local/share/bash-completion/completions/auditlake\n  auditlake completions zsh > \"${fpath[1]}/_auditlake\"\n  auditlake completions fish > ~/.config/fish/completions/auditlake.fish";

/// Print a shell completion script for auditlake.
///
/// Completes commands, flags and their fixed values (formats, modes).
#[derive(clap::Args, Debug)]
#[command(after_long_help = COMPLETIONS_EXAMPLES)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum, env = "AUDITLAKE_SHELL")]
    shell: clap_complete::Shell,
}

pub fn run(a: Args) -> Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "auditlake", &mut std::io::stdout());
    Ok(())
}

const MAN_EXAMPLES: &str = "Examples:\n  auditlake man > auditlake.1 && man ./auditlake.1\n  auditlake man | gzip > /usr/local/share/man/man1/auditlake.1.gz";

/// Print the man page (roff) of auditlake and every command.
#[derive(clap::Args, Debug)]
#[command(after_long_help = MAN_EXAMPLES)]
pub struct ManArgs {}

pub fn run_man(_: ManArgs) -> Result<()> {
    use std::io::Write;
    let cmd = super::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    // One page per command, as `git help` pages list theirs, each with the variables that set
    // its options (clap_mangen does not list them).
    for sub in cmd.get_subcommands() {
        let name = format!("auditlake-{}", sub.get_name());
        clap_mangen::Man::new(sub.clone().name(name)).render(&mut out)?;
        writeln!(out, ".SH ENVIRONMENT")?;
        for arg in sub.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let flag = match arg.get_long() {
                Some(l) => format!("\\-\\-{}", l.replace('-', "\\-")),
                None => format!("\\fI{}\\fR", arg.get_id()),
            };
            writeln!(out, ".TP\n\\fB{}\\fR\nSets {flag}.", env.to_string_lossy())?;
        }
    }
    Ok(())
}
