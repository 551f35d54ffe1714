//! What a query read and what it skipped, for `auditlake query -v`.
//!
//! Counts come from two places: the Parquet scans DataFusion plans for the
//! raw `audit` table (their metrics, read from the executed plan), and the
//! scans `relations` runs inside `audit_events` and `requests` (absorbed as
//! each finishes). Counters only grow; one [`ScanStats`] belongs to one
//! opened lake and is reset before each statement.

use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::ExecutionPlan;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ScanStats {
    /// Hour partitions (and their files) the relations looked at.
    partitions: AtomicU64,
    partition_files: AtomicU64,
    /// ... skipped by `dt`/`hour` filters or the time window.
    partitions_pruned: AtomicU64,
    files_in_pruned: AtomicU64,
    /// ... skipped because no request in them could match (`requests`).
    partitions_no_candidates: AtomicU64,
    /// Parquet scans run and what they read. `row_groups_read` counts the
    /// row groups tested against a scan's filters (none without one).
    scans: AtomicU64,
    files_opened: AtomicU64,
    files_pruned: AtomicU64,
    row_groups_read: AtomicU64,
    row_groups_pruned_stats: AtomicU64,
    row_groups_pruned_bloom: AtomicU64,
    pages_pruned: AtomicU64,
    rows_filtered_in_decode: AtomicU64,
    bytes_scanned: AtomicU64,
    rows_read: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl ScanStats {
    pub fn reset(&self) {
        for c in [
            &self.partitions,
            &self.partition_files,
            &self.partitions_pruned,
            &self.files_in_pruned,
            &self.partitions_no_candidates,
            &self.scans,
            &self.files_opened,
            &self.files_pruned,
            &self.row_groups_read,
            &self.row_groups_pruned_stats,
            &self.row_groups_pruned_bloom,
            &self.pages_pruned,
            &self.rows_filtered_in_decode,
            &self.bytes_scanned,
            &self.rows_read,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    pub fn add_partitions(&self, partitions: u64, files: u64) {
        add(&self.partitions, partitions);
        add(&self.partition_files, files);
    }

    pub fn partition_pruned(&self, files: u64) {
        add(&self.partitions_pruned, 1);
        add(&self.files_in_pruned, files);
    }

    pub fn partition_without_candidates(&self) {
        add(&self.partitions_no_candidates, 1);
    }

    /// Add the metrics of every Parquet scan in an executed `plan`.
    pub fn absorb(&self, plan: &dyn ExecutionPlan) {
        if plan.name() == "DataSourceExec" {
            add(&self.scans, 1);
            if let Some(m) = plan.metrics() {
                for metric in m.iter() {
                    match metric.value() {
                        MetricValue::PruningMetrics {
                            name,
                            pruning_metrics,
                        } => {
                            let (pruned, matched) = (
                                pruning_metrics.pruned() as u64,
                                pruning_metrics.matched() as u64,
                            );
                            match name.as_ref() {
                                "files_ranges_pruned_statistics" => {
                                    add(&self.files_opened, matched);
                                    add(&self.files_pruned, pruned);
                                }
                                "row_groups_pruned_statistics" => {
                                    add(&self.row_groups_pruned_stats, pruned);
                                    add(&self.row_groups_read, matched + pruned);
                                }
                                "row_groups_pruned_bloom_filter" => {
                                    add(&self.row_groups_pruned_bloom, pruned);
                                }
                                "page_index_pages_pruned" => add(&self.pages_pruned, pruned),
                                _ => {}
                            }
                        }
                        MetricValue::Count { name, count } => match name.as_ref() {
                            "bytes_scanned" => add(&self.bytes_scanned, count.value() as u64),
                            "pushdown_rows_pruned" => {
                                add(&self.rows_filtered_in_decode, count.value() as u64)
                            }
                            _ => {}
                        },
                        MetricValue::OutputRows(c) => add(&self.rows_read, c.value() as u64),
                        _ => {}
                    }
                }
            }
        }
        for c in plan.children() {
            self.absorb(c.as_ref());
        }
    }

    pub fn snapshot(&self) -> StatsReport {
        StatsReport {
            partitions: get(&self.partitions),
            partition_files: get(&self.partition_files),
            partitions_pruned: get(&self.partitions_pruned),
            files_in_pruned: get(&self.files_in_pruned),
            partitions_no_candidates: get(&self.partitions_no_candidates),
            scans: get(&self.scans),
            files_opened: get(&self.files_opened),
            files_pruned: get(&self.files_pruned),
            row_groups_read: get(&self.row_groups_read),
            row_groups_pruned_stats: get(&self.row_groups_pruned_stats),
            row_groups_pruned_bloom: get(&self.row_groups_pruned_bloom),
            pages_pruned: get(&self.pages_pruned),
            rows_filtered_in_decode: get(&self.rows_filtered_in_decode),
            bytes_scanned: get(&self.bytes_scanned),
            rows_read: get(&self.rows_read),
        }
    }
}

/// A copy of the counters, printed by `query -v`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsReport {
    pub partitions: u64,
    pub partition_files: u64,
    pub partitions_pruned: u64,
    pub files_in_pruned: u64,
    pub partitions_no_candidates: u64,
    pub scans: u64,
    pub files_opened: u64,
    pub files_pruned: u64,
    pub row_groups_read: u64,
    pub row_groups_pruned_stats: u64,
    pub row_groups_pruned_bloom: u64,
    pub pages_pruned: u64,
    pub rows_filtered_in_decode: u64,
    pub bytes_scanned: u64,
    pub rows_read: u64,
}

impl fmt::Display for StatsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.partitions > 0 {
            writeln!(
                f,
                "hour partitions: {} considered by audit_events/requests, {} skipped by dt/hour or the window ({} files), {} skipped as holding no matching request",
                self.partitions, self.partitions_pruned, self.files_in_pruned, self.partitions_no_candidates
            )?;
        }
        writeln!(
            f,
            "parquet: {} scans, {} files opened, {} skipped by statistics; row groups tested against filters: {}, {} skipped by statistics, {} by bloom filter; {} pages skipped",
            self.scans,
            self.files_opened,
            self.files_pruned,
            self.row_groups_read,
            self.row_groups_pruned_stats,
            self.row_groups_pruned_bloom,
            self.pages_pruned
        )?;
        write!(
            f,
            "read: {} rows ({} more dropped while decoding by pushed filters), {:.1} MB",
            self.rows_read,
            self.rows_filtered_in_decode,
            self.bytes_scanned as f64 / 1e6
        )
    }
}
