//! The `auditlake` command line: parse, initialise, dispatch. Each command lives in `cli/`
//! (its flags, their conversion into the library's settings, and its `run`).

mod cli;

use anyhow::{Context, Result};
use clap::Parser;
use std::io::IsTerminal;

/// Keep freed memory in the process instead of handing it back to the
/// kernel after every batch.
///
/// The pipeline allocates and frees buffers of megabytes many times a second
/// (16 MiB input chunks, Arrow column buffers, Parquet pages). With glibc's
/// defaults each of them is a fresh `mmap`, so every page is faulted in and
/// zeroed by the kernel again, and a trimmed heap is regrown: measured on a
/// 1,000,000-event ingest, system time fell from 0.9–1.2 s to 0.4–0.5 s with
/// these settings. Memory stays bounded: what is kept is the pipeline's own
/// high-water mark, which the bounded channels already cap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it is called before
    // any other thread exists. 32 MiB is the largest mmap threshold glibc
    // accepts (a larger value is refused and the default kept); the input
    // chunks (16 MiB) and column buffers are below it.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// Let a closed output pipe end the process quietly (the default action of
/// SIGPIPE, which Rust's runtime sets to "ignore": every `println!` would
/// then panic on `| head`). Only for commands that write to standard output
/// and hold no sockets: a server must see a client's closed connection as
/// an error, not die of it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn default_sigpipe() {
    // SAFETY: restoring a signal's default disposition, before any other
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn default_sigpipe() {}

/// Errors are printed once, as a chain of causes, and never with a stack
/// trace (`RUST_BACKTRACE` is for developers; a user's error is not a
/// bug). A closed output pipe (`auditlake query … | head -1`) ends the
/// command quietly, as Unix tools do.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                // Wrapping errors often repeat their source's text.
                if !msg.contains(&c) {
                    msg.push_str(&format!("\n  caused by: {c}"));
                }
            }
            eprintln!("error: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether `e` comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

fn run() -> Result<()> {
    tune_allocator();
    let cli = cli::Cli::parse();
    if cli.command.writes_to_a_pipe() {
        default_sigpipe();
    }
    // The Delta kernel logs each snapshot it builds at INFO, and every lake commit builds
    // one: under `--log info` that buried auditlake's own lines. It stays at WARN unless the
    // filter names it.
    let filter = if cli.log.contains("kernel") || cli.log.contains("delta") {
        cli.log.clone()
    } else {
        format!("{},buoyant_kernel=warn,deltalake_core=warn", cli.log)
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .with_context(|| format!("invalid --log filter `{}`", cli.log))?,
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal (and never with NO_COLOR set): escape
        // codes in a log file or a collector are noise.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    auditlake::sinks::lake::store::configure(cli.lake_options, cli.lake_cache);
    cli.command.run()
}
