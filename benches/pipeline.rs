//! Throughput of each pipeline stage on generated traffic: decode (and its
//! event parser, scanner against serde_json), resolve, Arrow assembly and
//! Parquet encoding. Reported as events/s (elements) and
//! input MB/s (bytes). End-to-end figures are in the README.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use auditlake::decode::{decode_unit, decode_unit_in, scan, Decoded};
use auditlake::event::{Event, Spare};
use auditlake::profiles::Profiles;
use auditlake::resolve::resolve;
use auditlake::schema::record_schema;
use auditlake::sinks::lake::batch::{BatchBuilder, Row, RowContext};
use auditlake::sinks::lake::writer::{encoding_pool, ParquetFile};
use auditlake::sinks::lake::{writer_properties, WriteOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const EVENTS: u64 = 20_000;

fn input() -> (String, Vec<(usize, usize)>) {
    let bytes = auditlake::tools::gen::jsonl(EVENTS, 1);
    let text = String::from_utf8(bytes).unwrap_or_default();
    let mut spans = Vec::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        spans.push((start, start + line.trim_end().len()));
        start += line.len();
    }
    (text, spans)
}

fn decoded<'a>(text: &'a str, spans: &[(usize, usize)]) -> Vec<Decoded<'a>> {
    let mut out = Vec::with_capacity(spans.len());
    for &(a, b) in spans {
        decode_unit(&text[a..b], |d| out.push(d), |_| {});
    }
    out
}

fn stages(c: &mut Criterion) {
    let (text, spans) = input();
    let profiles = Profiles::builtin();
    let mut g = c.benchmark_group("stages");
    g.sample_size(10);

    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("decode/events", |b| {
        b.iter(|| black_box(decoded(&text, &spans).len()))
    });
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("decode/bytes", |b| {
        b.iter(|| black_box(decoded(&text, &spans).len()))
    });

    // Decoding as `ingest` does it: runs of 64 events, after which the
    // events are dropped (`fresh`: every list allocated and freed again)
    // or their list buffers handed back to the decoder (`reused`, what
    // `ingest`'s Assembler does).
    g.throughput(Throughput::Elements(EVENTS));
    for (name, reuse) in [("decode_runs/fresh", false), ("decode_runs/reused", true)] {
        let mut spare = Spare::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut run = Vec::with_capacity(64);
                let mut n = 0usize;
                for &(a, z) in &spans {
                    decode_unit_in(&text[a..z], &mut spare, |d| run.push(d), |_| {});
                    if run.len() >= 64 {
                        n += run.len();
                        for d in run.drain(..) {
                            if reuse {
                                spare.keep(d.event);
                            }
                        }
                    }
                }
                black_box(n + run.len())
            })
        });
    }

    // The event parser alone: the decoder's scanner, and serde_json, which
    // it falls back to (and which decoded everything before it).
    g.throughput(Throughput::Elements(EVENTS));
    for (name, scanner) in [("parse/scan", true), ("parse/serde", false)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0usize;
                for &(a, z) in &spans {
                    let line = &text[a..z];
                    let parsed = if scanner {
                        scan::event(line)
                    } else {
                        serde_json::from_str::<Event>(line).ok()
                    };
                    n += parsed.map_or(0, |e| e.source_ips.len());
                }
                black_box(n)
            })
        });
    }

    let events = decoded(&text, &spans);
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function("resolve", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for d in &events {
                let r = resolve(&d.event, &profiles);
                n += r.resolution as usize;
            }
            black_box(n)
        })
    });

    let ctx = RowContext {
        cluster: "bench",
        ingested_at_us: 0,
        envelope_cluster: false,
    };
    // Resolve and append in runs of `run` events, as `ingest` does (64),
    // or one event at a time (1). The builder is reused, so from the second
    // batch on its buffers are sized by the batch before, as in `ingest`.
    let build = |builder: &mut BatchBuilder, run: usize| {
        for part in events.chunks(run) {
            let resolved: Vec<_> = part.iter().map(|d| resolve(&d.event, &profiles)).collect();
            let rows: Vec<Row> = part
                .iter()
                .zip(&resolved)
                .map(|(d, r)| Row {
                    decoded: d,
                    resolved: r,
                    source: "file:bench:1",
                })
                .collect();
            builder.append_rows(&rows, &ctx);
        }
        builder.finish()
    };
    for (name, run) in [("arrow_build", 64), ("arrow_build_row_by_row", 1)] {
        let mut builder = BatchBuilder::new();
        g.bench_function(name, |b| {
            b.iter(|| black_box(build(&mut builder, run).map(|b| b.num_rows())))
        });
    }

    let Ok(batch) = build(&mut BatchBuilder::new(), 64) else {
        panic!("batch build failed")
    };
    // The lake's writer: columns encoded one after another (`serial`) and
    // spread over a pool of every core (`parallel`, what `ingest` does).
    g.throughput(Throughput::Elements(EVENTS));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = encoding_pool(threads);
    for (name, pool) in [
        ("parquet_encode_serial", None),
        ("parquet_encode_parallel", pool),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let props = writer_properties(&WriteOptions::default(), "bench");
                let mut w = ParquetFile::try_new(
                    Vec::with_capacity(8 << 20),
                    record_schema(),
                    props,
                    pool.clone(),
                )
                .unwrap_or_else(|e| panic!("writer: {e}"));
                w.write(&batch).unwrap_or_else(|e| panic!("write: {e}"));
                let out = w.into_inner().unwrap_or_else(|e| panic!("close: {e}"));
                black_box(out.len())
            })
        });
    }
    g.finish();

    // Each column on its own: a one-column file with the lake's properties
    // for that column (dictionary, statistics, bloom filter, encoding and
    // ZSTD all follow the column name), encoded on one thread. Shows where
    // the encoding time goes; the README lists the costliest columns.
    let mut g = c.benchmark_group("column_encode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS));
    let props = writer_properties(&WriteOptions::default(), "bench");
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![field.clone()]));
        let Ok(one) =
            arrow::record_batch::RecordBatch::try_new(schema.clone(), vec![column.clone()])
        else {
            panic!("one-column batch of {}", field.name())
        };
        g.bench_function(field.name(), |b| {
            b.iter(|| {
                let mut w = ParquetFile::try_new(Vec::new(), schema.clone(), props.clone(), None)
                    .unwrap_or_else(|e| panic!("writer: {e}"));
                w.write(&one).unwrap_or_else(|e| panic!("write: {e}"));
                let out = w.into_inner().unwrap_or_else(|e| panic!("close: {e}"));
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
