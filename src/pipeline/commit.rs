//! The committer: one source's open lake segment, the positions it holds, and when it is
//! committed. The three drivers write through it, so the exactly-once step ("the files and the
//! source's position move together, in one atomic commit") lives in one place.
//!
//! Invariants:
//! - a segment covers a contiguous run of positions, `first..=last`, and is committed with
//!   files named after that run (`stem`), so a replay after a crash rewrites the same names;
//! - the source's state moves to `last` (files, the write-ahead log: the last position in the
//!   lake) or `last + 1` (Kafka: the next offset to read) only inside [`Segment::commit`];
//! - nothing is committed that was not written, and an empty committer commits nothing.
//!
//! The drivers keep what truly differs: the file pipeline commits when a segment is full, the
//! webhook also when its log catches up or replay ends, Kafka also before a rebalance; what to
//! do after a commit (metrics, trimming the log, committing offsets) is the caller's, from the
//! returned [`Committed`].

use super::stem;
use crate::sinks::lake::{CommitInfo, Lake, LakeError, Resume, Segment, SourceState};
use std::time::{Duration, Instant};

/// When an open segment is due, besides being full ([`Segment::is_full`]).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Rows in the segment.
    pub rows: u64,
    /// Time since its first write.
    pub age: Duration,
}

impl Policy {
    /// Only a full segment is due (a file is committed as it fills, and at its end).
    pub const WHEN_FULL: Policy = Policy {
        rows: u64::MAX,
        age: Duration::MAX,
    };
}

struct Open {
    segment: Segment,
    first: u64,
    last: u64,
    opened: Instant,
}

/// What one commit stored, for the caller's metrics and follow-up.
#[derive(Debug)]
pub struct Committed {
    pub first: u64,
    pub last: u64,
    pub info: CommitInfo,
    /// The source's position after the commit (its `committed_through`).
    pub through: u64,
    pub took: Duration,
}

pub struct Committer {
    lake: Lake,
    source: String,
    through: Resume,
    state: SourceState,
    policy: Policy,
    open: Option<Open>,
}

impl Committer {
    /// A committer for `source`, whose lake state (after recovery) is `state`; `through` says
    /// whether its positions are advanced to the last one stored or the next one to read.
    pub fn new(
        lake: &Lake,
        source: &str,
        state: SourceState,
        through: Resume,
        policy: Policy,
    ) -> Self {
        Committer {
            lake: lake.clone(),
            source: source.to_string(),
            through,
            state,
            policy,
            open: None,
        }
    }

    pub fn state(&self) -> &SourceState {
        &self.state
    }

    pub fn into_state(self) -> SourceState {
        self.state
    }

    /// The open segment, opened at position `first` if none is; then holding positions
    /// through `last`.
    pub fn segment(&mut self, first: u64, last: u64) -> &mut Segment {
        let open = self.open.get_or_insert_with(|| Open {
            segment: self.lake.segment(&self.source),
            first,
            last,
            opened: Instant::now(),
        });
        open.last = open.last.max(last);
        &mut open.segment
    }

    /// The open segment, if any (to add what must go in before it is committed).
    pub fn open_segment(&mut self) -> Option<&mut Segment> {
        self.open.as_mut().map(|o| &mut o.segment)
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn rows(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| o.segment.rows())
    }

    pub fn open_partitions(&self) -> usize {
        self.open
            .as_ref()
            .map_or(0, |o| o.segment.open_partitions())
    }

    /// The open segment is full, has the policy's rows, or is older than its age.
    pub fn due(&self) -> bool {
        self.open.as_ref().is_some_and(|o| {
            o.segment.is_full()
                || o.segment.rows() >= self.policy.rows
                || o.opened.elapsed() >= self.policy.age
        })
    }

    /// Time until the open segment is due by age (`None`: nothing is open).
    pub fn age_left(&self) -> Option<Duration> {
        let o = self.open.as_ref()?;
        Some(self.policy.age.saturating_sub(o.opened.elapsed()))
    }

    /// Commit the open segment (if any) and advance the source's state.
    pub fn commit(&mut self) -> Result<Option<Committed>, LakeError> {
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        let started = Instant::now();
        let through = match self.through {
            Resume::Last => open.last,
            Resume::Next => open.last + 1,
        };
        let stem = stem(&self.source, open.first, open.last);
        let info = open.segment.commit(&stem, through, &mut self.state)?;
        tracing::debug!(
            source = self.source,
            first = open.first,
            last = open.last,
            rows = info.rows,
            files = info.files,
            "segment committed"
        );
        Ok(Some(Committed {
            first: open.first,
            last: open.last,
            info,
            through: self.state.committed_through,
            took: started.elapsed(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::lake::{RejectRecord, WriteOptions};

    fn reject(pos: u64) -> RejectRecord {
        RejectRecord::of("test", pos, "bad".into(), b"{")
    }

    /// Positions, names and state move together; per mode, and only when something was written.
    #[test]
    fn commits_advance_the_state_by_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(dir.path(), WriteOptions::default()).expect("lake");
        for (through, first, last, want) in [(Resume::Last, 1, 3, 3), (Resume::Next, 10, 12, 13)] {
            let source = format!("s-{through:?}");
            let state = lake.recover(&source, "test", through).expect("recover");
            let mut c = Committer::new(&lake, &source, state, through, Policy::WHEN_FULL);
            assert!(c.commit().expect("empty commit").is_none());
            assert!(!c.due(), "an empty committer is never due");
            c.segment(first, first)
                .reject(&reject(first))
                .expect("write");
            c.segment(first + 1, last)
                .reject(&reject(last))
                .expect("write");
            let done = c.commit().expect("commit").expect("something committed");
            assert_eq!((done.first, done.last, done.through), (first, last, want));
            assert_eq!(done.info.rejected, 2);
            assert_eq!(c.state().committed_through, want);
            assert!(!c.is_open());
            // The next run starts where the lake says.
            let again = lake.recover(&source, "test", through).expect("recover");
            assert_eq!(again.committed_through, want);
        }
    }

    #[test]
    fn due_by_rows_or_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(dir.path(), WriteOptions::default()).expect("lake");
        let state = lake.recover("s", "test", Resume::Last).expect("recover");
        let aged = Policy {
            rows: u64::MAX,
            age: Duration::ZERO,
        };
        let mut c = Committer::new(&lake, "s", state, Resume::Last, aged);
        assert_eq!(c.age_left(), None);
        c.segment(1, 1).reject(&reject(1)).expect("write");
        assert!(c.due());
        assert_eq!(c.age_left(), Some(Duration::ZERO));
        let state = c.into_state();
        let mut c = Committer::new(&lake, "s", state, Resume::Last, Policy::WHEN_FULL);
        c.segment(1, 1).reject(&reject(1)).expect("write");
        assert!(!c.due());
    }
}
