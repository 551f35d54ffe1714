//! Assembly: units of text (a line, a message, a batch) into per-partition Arrow batches and
//! rejections, the same way for every source.
//!
//! A worker does not build rows one event at a time: the [`Assembler`] decodes a run of events,
//! resolves them, and appends the run column by column. Invariant: the batches are exactly what
//! appending each event on its own gives (tested below), and every unit's events and
//! rejections keep their order.

use crate::decode::envelope::{self, InputFormat};
use crate::decode::{decode_item_in, decode_unit_in, Decoded};
use crate::event::Spare;
use crate::profiles::Profiles;
use crate::resolve::{resolve, ClaimStatus, Resolved};
use crate::sinks::lake::batch::{BatchBuilder, PartKey, Row, RowContext};
use crate::sinks::lake::RejectRecord;
use arrow::record_batch::RecordBatch;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// How many decoded events wait before they are resolved and appended
/// together (see [`BatchBuilder::append_rows`]): enough for runs of appends
/// per column, few enough that the events stay in the core's cache.
const RUN: usize = 64;

/// A decoded event waiting for [`flush_run`], with the range of its
/// `source` value in the assembler's `src`.
struct Staged<'a> {
    decoded: Decoded<'a>,
    src: std::ops::Range<usize>,
}

/// Decode, resolve and assemble units of text into per-partition Arrow
/// batches. Shared by every source; keeps its builders between calls.
#[derive(Default)]
pub struct Assembler {
    builders: HashMap<PartKey, BatchBuilder>,
    src: String,
    /// List buffers the decoder fills...
    spare: Spare,
    /// ...and those of events already appended, given back to `spare`
    /// before the next unit is decoded (the decoder holds `spare` while it
    /// calls back, and appending happens inside that callback).
    returned: Spare,
    /// Envelope messages that held no audit event (CloudWatch
    /// `CONTROL_MESSAGE`, other log categories), since the last
    /// [`take_skipped`](Assembler::take_skipped).
    skipped: u64,
    /// Requests carrying a proxy's claim from an identity no profile trusts
    /// (flagged `spoofed`), by that identity and the profile whose claim
    /// keys they carry: either an attack or a profile naming the wrong
    /// identity (a proxy installed under another namespace).
    untrusted: Untrusted,
}

/// Spoofed-claim counts by (authenticated user, profile imitated).
pub type Untrusted = BTreeMap<(String, String), u64>;

/// Distinct identities [`Untrusted`] keeps apart; the rest are counted
/// together, so a flood of names cannot grow it.
const UNTRUSTED_KEYS: usize = 64;

/// The identity the overflow of [`Untrusted`] is counted under.
pub const OTHER_IDENTITIES: &str = "(other identities)";

/// How the rows and rejections of one source are labelled.
pub struct Labels<'a> {
    /// Rows get `source` = `prefix` + position.
    pub prefix: &'a str,
    /// Rejections say they came from here.
    pub origin: &'a str,
    /// Cluster and ingest time of every row.
    pub row: RowContext<'a>,
    /// Whose identity claims are believed.
    pub profiles: &'a Profiles,
    /// Which envelopes are opened (`--format`).
    pub format: InputFormat,
}

impl Assembler {
    /// Add one unit found at `pos`. Returns the number of events decoded.
    pub fn add(
        &mut self,
        text: &str,
        pos: u64,
        labels: &Labels,
        rejects: &mut Vec<RejectRecord>,
    ) -> u64 {
        self.add_units(std::iter::once((pos, text)), labels, rejects)
    }

    /// Add units of text, each with its position, in order; as [`add`]
    /// for each, but events of consecutive units are appended together.
    ///
    /// [`add`]: Assembler::add
    pub fn add_units<'a>(
        &mut self,
        units: impl IntoIterator<Item = (u64, &'a str)>,
        labels: &Labels,
        rejects: &mut Vec<RejectRecord>,
    ) -> u64 {
        self.add_pieces(
            units.into_iter().map(|(pos, text)| (pos, text, None)),
            labels,
            rejects,
        )
    }

    /// Add one item of a list read in pieces ([`crate::decode::split`]):
    /// the `index`-th event of the unit at `pos`. As [`add`] with the
    /// whole list would treat that item.
    ///
    /// [`add`]: Assembler::add
    pub fn add_item(
        &mut self,
        text: &str,
        pos: u64,
        index: usize,
        labels: &Labels,
        rejects: &mut Vec<RejectRecord>,
    ) -> u64 {
        self.add_pieces(std::iter::once((pos, text, Some(index))), labels, rejects)
    }

    /// Units (`None`) and list items (`Some(index)`) of text, in order.
    fn add_pieces<'a>(
        &mut self,
        units: impl IntoIterator<Item = (u64, &'a str, Option<usize>)>,
        labels: &Labels,
        rejects: &mut Vec<RejectRecord>,
    ) -> u64 {
        let (prefix, origin) = (labels.prefix, labels.origin);
        let mut events = 0u64;
        let mut staged: Vec<Staged<'a>> = Vec::with_capacity(RUN);
        let (src, spare) = (&mut self.src, &mut self.spare);
        let mut runs = Runs {
            builders: &mut self.builders,
            row_ctx: &labels.row,
            profiles: labels.profiles,
            returned: &mut self.returned,
            untrusted: &mut self.untrusted,
        };
        for (pos, text, index) in units {
            spare.absorb(runs.returned);
            // Between runs no staged event refers to `src`.
            if staged.is_empty() {
                src.clear();
            }
            let a = src.len();
            let _ = write!(src, "{prefix}{pos}");
            let range = a..src.len();
            // A list item is an event, never an envelope.
            let envelope = match index {
                Some(_) => None,
                None => envelope::open(text, labels.format),
            };
            match envelope {
                None => {}
                Some(Err(error)) => {
                    rejects.push(RejectRecord::of(
                        origin,
                        pos,
                        error.to_string(),
                        text.as_bytes(),
                    ));
                    continue;
                }
                Some(Ok(mut opened)) => {
                    // The envelope's events may borrow text it owns, which
                    // lives only for this unit: they are appended before
                    // the next unit, in a run of their own.
                    runs.flush(&mut staged, src);
                    self.skipped += opened.skipped.len() as u64;
                    let mut run: Vec<Staged> = Vec::with_capacity(RUN);
                    envelope::decode_opened(
                        &mut opened,
                        spare,
                        |decoded| {
                            events += 1;
                            let src_range = range.clone();
                            runs.stage(
                                &mut run,
                                Staged {
                                    decoded,
                                    src: src_range,
                                },
                                src,
                            );
                        },
                        |rej| {
                            rejects.push(
                                RejectRecord::of(origin, pos, rej.reason, rej.text.as_bytes())
                                    .item(Some(rej.item), None),
                            );
                        },
                    );
                    runs.flush(&mut run, src);
                    continue;
                }
            }
            let on_event = |decoded| {
                events += 1;
                let src_range = range.clone();
                runs.stage(
                    &mut staged,
                    Staged {
                        decoded,
                        src: src_range,
                    },
                    src,
                );
            };
            let on_reject = |rej: crate::decode::Rejection| {
                // The rejected text lies inside the unit: its offset
                // lets a caller map it back to original bytes.
                let offset = (rej.text.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
                let offset = (offset <= text.len()).then_some(offset as u64);
                rejects.push(
                    RejectRecord::of(origin, pos, rej.error.to_string(), rej.text.as_bytes())
                        .item(rej.item, offset),
                );
            };
            match index {
                Some(index) => decode_item_in(text, index, spare, on_event, on_reject),
                None => decode_unit_in(text, spare, on_event, on_reject),
            }
        }
        runs.flush(&mut staged, src);
        events
    }

    /// Requests with untrusted claims seen since the last call.
    pub fn take_untrusted(&mut self) -> Untrusted {
        std::mem::take(&mut self.untrusted)
    }

    /// Envelope messages without audit events seen since the last call.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// Rows added since the last call, as batches sorted by partition.
    pub fn finish(&mut self) -> Result<Vec<(PartKey, RecordBatch)>, arrow::error::ArrowError> {
        let mut parts = Vec::new();
        for (part, b) in self.builders.iter_mut() {
            if !b.is_empty() {
                parts.push((*part, b.finish()?));
            }
        }
        // Idle partitions would keep their (empty) builders forever.
        if self.builders.len() > 8 {
            self.builders.clear();
        }
        parts.sort_by_key(|(p, _)| *p);
        Ok(parts)
    }
}

/// Where runs of staged events go: the builders, and what a run leaves
/// behind (list buffers to reuse, untrusted-claim counts).
struct Runs<'x> {
    builders: &'x mut HashMap<PartKey, BatchBuilder>,
    row_ctx: &'x RowContext<'x>,
    profiles: &'x Profiles,
    returned: &'x mut Spare,
    untrusted: &'x mut Untrusted,
}

impl Runs<'_> {
    /// Stage one event; a full run is appended at once.
    fn stage<'s>(&mut self, staged: &mut Vec<Staged<'s>>, s: Staged<'s>, src: &str) {
        staged.push(s);
        if staged.len() >= RUN {
            self.flush(staged, src);
        }
    }

    /// Resolve the staged events and append them, then empty `staged` (its
    /// events' list buffers go to `returned`).
    fn flush(&mut self, staged: &mut Vec<Staged>, src: &str) {
        let Runs {
            builders,
            row_ctx,
            profiles,
            returned,
            untrusted,
        } = self;
        let (profiles, row_ctx): (&Profiles, &RowContext) = (profiles, row_ctx);
        let resolved: Vec<Resolved> = staged
            .iter()
            .map(|s| resolve(&s.decoded.event, profiles))
            .collect();
        for (s, r) in staged.iter().zip(&resolved) {
            if r.claim_status != ClaimStatus::Spoofed {
                continue;
            }
            let e = &s.decoded.event;
            let user = e.user.username.as_deref().unwrap_or_default();
            let profile = e
                .impersonated_user
                .as_ref()
                .and_then(|i| profiles.claimed_by(|k| i.extra_values(k).is_some()))
                .map_or("", |p| p.name.as_str());
            let mut key = (user.to_string(), profile.to_string());
            if untrusted.len() >= UNTRUSTED_KEYS && !untrusted.contains_key(&key) {
                key.0 = OTHER_IDENTITIES.to_string();
            }
            *untrusted.entry(key).or_default() += 1;
        }
        let rows: Vec<Row> = staged
            .iter()
            .zip(&resolved)
            .map(|(s, r)| Row {
                decoded: &s.decoded,
                resolved: r,
                source: src.get(s.src.clone()).unwrap_or_default(),
            })
            .collect();
        let part = |r: &Row| PartKey::from_micros(r.decoded.received_us.or(r.decoded.stage_us));
        // Consecutive rows of one partition (usually the whole run) go to its
        // builder together, which keeps each partition's rows in order.
        let mut rest = &rows[..];
        while let Some(first) = rest.first() {
            let p = part(first);
            let n = rest.iter().take_while(|r| part(r) == p).count();
            builders
                .entry(p)
                .or_default()
                .append_rows(&rest[..n], row_ctx);
            rest = &rest[n..];
        }
        // Both borrow `staged`.
        drop(rows);
        drop(resolved);
        for s in staged.drain(..) {
            returned.keep(s.decoded.event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_unit;
    use std::collections::BTreeMap;

    /// `add_units` appends in runs, column by column; the batches and
    /// rejections must be exactly what appending each event on its own
    /// gives. The units switch partitions inside runs, include EventLists
    /// (several rows per unit, split across runs) and bad lines.
    #[test]
    fn runs_assemble_what_single_rows_do() {
        let text = crate::tools::gen::jsonl(500, 11);
        let text = std::str::from_utf8(&text).expect("generator writes UTF-8");
        let mut units: Vec<String> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = match i % 7 {
                // Every third line an hour later; every seventh with no
                // timestamps (the default partition).
                _ if i % 3 == 0 => line.replace("2026-11-20T08", "2026-11-20T09"),
                0 => line
                    .replace("\"requestReceivedTimestamp\"", "\"x1\"")
                    .replace("\"stageTimestamp\"", "\"x2\""),
                _ => line.to_string(),
            };
            units.push(line);
        }
        // EventLists of 1..=100 items, one longer than a run.
        for n in [1, 5, 100] {
            let items: Vec<&str> = text.lines().take(n).collect();
            units.insert(
                40 + n,
                format!(
                    r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
                    items.join(",")
                ),
            );
        }
        units.insert(10, "not json".to_string());
        units.insert(200, r#"{"kind":"Event","level":"Nope"}"#.to_string());

        let profiles = Profiles::builtin();
        let ctx = RowContext {
            cluster: "c1",
            ingested_at_us: 7,
            envelope_cluster: false,
        };
        let mut asm = Assembler::default();
        let mut rejects = Vec::new();
        let positioned = units
            .iter()
            .enumerate()
            .map(|(i, u)| (i as u64 + 1, u.as_str()));
        let labels = Labels {
            prefix: "t:",
            origin: "o",
            row: ctx,
            profiles: &profiles,
            format: InputFormat::Auto,
        };
        let events = asm.add_units(positioned, &labels, &mut rejects);
        let runs = asm.finish().expect("batches build");

        let mut builders: BTreeMap<PartKey, BatchBuilder> = BTreeMap::new();
        let mut single_rejects = Vec::new();
        let mut single_events = 0u64;
        for (i, u) in units.iter().enumerate() {
            let pos = i as u64 + 1;
            decode_unit(
                u,
                |d| {
                    single_events += 1;
                    let r = resolve(&d.event, &profiles);
                    let part = PartKey::from_micros(d.received_us.or(d.stage_us));
                    builders
                        .entry(part)
                        .or_default()
                        .append(&d, &r, &ctx, &format!("t:{pos}"));
                },
                |rej| single_rejects.push((pos, rej.item, rej.error.to_string())),
            );
        }
        let singles: Vec<(PartKey, RecordBatch)> = builders
            .iter_mut()
            .map(|(p, b)| (*p, b.finish().expect("batch builds")))
            .collect();

        assert_eq!(events, single_events);
        assert_eq!(events, 500 + 1 + 5 + 100);
        assert_eq!(runs.len(), 3, "08:00, 09:00 and the default partition");
        assert_eq!(runs, singles);
        let got: Vec<_> = rejects
            .iter()
            .map(|r| (r.position, r.item, r.reason.clone()))
            .collect();
        assert_eq!(got, single_rejects);
        assert_eq!(got.len(), 2);
    }
}
