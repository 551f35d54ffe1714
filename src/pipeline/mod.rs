//! The pipelines: the three ways in, driven from source to lake commit, and what they share.
//!
//! Shared stages:
//! - [`assemble`]: text to Arrow batches and rejections ([`assemble::Assembler`]).
//! - [`reorder`]: releases work in sequence after a pool of workers ([`reorder::Reorder`]).
//! - [`commit`]: one source's open segment, positions and commit policy ([`commit::Committer`]).
//!
//! Drivers, separate where they truly differ:
//! - [`file`]: log files → lake (threads: reader, workers, writer; file reordering).
//! - [`follow`]: a live log file → lake across its rotations ([`file`] per file, sweeps of the
//!   rotated copies).
//! - [`webhook`]: the webhook's log → lake (replay, the log's durability watch, trim).
//! - [`serve`]: the webhook receiver wired together (server, log, [`webhook`], metrics).
//! - [`kafka`]: Kafka partitions → lake, offsets committed after the lake commit (rebalance
//!   barriers).
//! - [`maintain`]: background compaction, retention and vacuum for `serve` and `consume`.

pub mod assemble;
pub mod commit;
pub mod file;
pub mod follow;
pub mod kafka;
pub mod maintain;
pub mod reorder;
pub mod serve;
pub mod webhook;

use std::sync::mpsc::Receiver;
use std::sync::Mutex;

/// Segment file stem from a source and position range.
pub fn stem(source: &str, first: u64, last: u64) -> String {
    format!("{source}-{first:012}-{last:012}")
}

/// The advice for requests whose claim no profile trusts. A proxy runs as a
/// service account; a person or node carrying a proxy's claim is most
/// likely forging it.
pub fn untrusted_advice(user: &str, profile: &str) -> String {
    let stored = format!(
        "requests from `{user}` carry the claim of proxy profile `{profile}`, but no profile trusts `{user}`: they are stored as claim_status = spoofed"
    );
    if user.starts_with("system:serviceaccount:") {
        format!(
            "{stored}. If `{user}` is your {profile} installed under another name, add it to that profile's proxy_usernames \
             (`auditlake profiles suggest --lake L` lists such identities) and re-ingest; otherwise someone is forging the claim"
        )
    } else {
        format!(
            "{stored}. `{user}` is not a service account, as a proxy is: most likely someone forging the claim \
             (`auditlake query --named spoofed-malformed-claims` lists the requests)"
        )
    }
}

/// Log each identity of `found` once per process (at most `limit` of them),
/// with [`untrusted_advice`]; returns how many requests `found` holds.
pub fn warn_untrusted(
    warned: &mut std::collections::HashSet<(String, String)>,
    found: assemble::Untrusted,
    limit: usize,
) -> u64 {
    let mut n = 0;
    for ((user, profile), count) in found {
        n += count;
        if warned.len() < limit && warned.insert((user.clone(), profile.clone())) {
            tracing::warn!(
                identity = %user,
                profile = %profile,
                requests = count,
                "{}",
                untrusted_advice(&user, &profile)
            );
        }
    }
    n
}

/// Take the next item from a receiver shared by a pool of workers; `None`
/// once the sender is gone (or a worker panicked holding the lock).
pub(crate) fn recv_shared<T>(rx: &Mutex<Receiver<T>>) -> Option<T> {
    rx.lock().ok()?.recv().ok()
}
