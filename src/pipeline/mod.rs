//! The pipelines: the three ways in, driven from source to lake commit, and what they share.
//!
//! Shared stages:
//! - [`assemble`]: text to Arrow batches and rejections ([`assemble::Assembler`]).
//! - [`reorder`]: releases work in sequence after a pool of workers ([`reorder::Reorder`]).
//! - [`commit`]: one source's open segment, positions and commit policy ([`commit::Committer`]).
//!
//! Drivers, separate where they truly differ:
//! - [`file`]: log files → lake (threads: reader, workers, writer; file reordering).
//! - [`webhook`]: the webhook's log → lake (replay, the log's durability watch, trim).
//! - [`serve`]: the webhook receiver wired together (server, log, [`webhook`], metrics).
//! - [`kafka`]: Kafka partitions → lake, offsets committed after the lake commit (rebalance
//!   barriers).

pub mod assemble;
pub mod commit;
pub mod file;
pub mod kafka;
pub mod reorder;
pub mod serve;
pub mod webhook;

use std::sync::mpsc::Receiver;
use std::sync::Mutex;

/// Segment file stem from a source and position range.
pub fn stem(source: &str, first: u64, last: u64) -> String {
    format!("{source}-{first:012}-{last:012}")
}

/// Take the next item from a receiver shared by a pool of workers; `None`
/// once the sender is gone (or a worker panicked holding the lock).
pub(crate) fn recv_shared<T>(rx: &Mutex<Receiver<T>>) -> Option<T> {
    rx.lock().ok()?.recv().ok()
}
