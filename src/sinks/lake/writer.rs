//! One Parquet file of the lake being written, its columns encoded in
//! parallel.
//!
//! `parquet::arrow::ArrowWriter` encodes a batch's columns one after another
//! on the calling thread. With ~60 columns, encoding (dictionaries, min/max
//! statistics, bloom filters, ZSTD) is about as much work per event as
//! decoding, so a single lake writer fed by several decode workers became
//! the serial bottleneck of `ingest`. Columns are independent until their
//! row group is closed, so here every top-level column (with its leaf
//! writers) is one unit of work for a rayon pool, and only the final splice
//! of encoded column chunks into the file runs on the caller's thread.
//!
//! A file can also keep its rows ordered within each row group
//! ([`ParquetFile::sorted_by`]): the rows of a row group are held as the
//! batches that brought them (Arrow slices, no copy) and sorted when the row
//! group closes, each column gathered in sorted order just before it is
//! encoded, so at most one sorted column per encoding thread exists at once.
//! The lake sorts by resource, then receive time (see [`super::ROW_ORDER`]):
//! a question about one resource then finds its rows in a few contiguous
//! pages, which the page index lets the reader skip to, instead of a few rows
//! in every page.
//!
//! Invariant: the bytes written are those `ArrowWriter` would write with the
//! same properties, given the same rows in the order they are stored (for a
//! sorted file: each row group's rows sorted): the file writer and the column
//! writers both come from `ArrowWriter::try_new(..).into_serialized_writer()`
//! (so the embedded Arrow schema and key-value metadata are identical), row
//! groups are cut at the same row counts, and column chunks are appended in
//! schema order.

use arrow::array::{Array, ArrayRef};
use arrow::compute::{concat, interleave, lexsort_to_indices, SortColumn, SortOptions};
use arrow::datatypes::{DataType, FieldRef, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;
use std::io::Write;
use std::sync::Arc;

/// A Parquet file being written with row groups of at most `max_rows` rows.
pub struct ParquetFile<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    fields: Vec<FieldRef>,
    /// Parquet leaf columns per top-level field (a map has two, a list one).
    leaves: Vec<usize>,
    /// Writers of the row group in progress, grouped by top-level field.
    open: Option<Vec<Vec<ArrowColumnWriter>>>,
    buffered_rows: usize,
    max_rows: usize,
    /// `None`: encode on the calling thread.
    pool: Option<Arc<rayon::ThreadPool>>,
    /// Columns each row group is sorted by; empty: rows stay as written.
    sort: Vec<usize>,
    /// Rows of the row group in progress not yet encoded (sorted files only).
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// Arrow bytes `pending` holds (of its slices, not the buffers they share).
    pending_bytes: usize,
}

/// The pool `ParquetFile`s encode on: `threads` workers named
/// `auditlake-encode-N`, or `None` (encode on the writing thread: slower,
/// same bytes) when one thread is asked for or none could be started.
pub fn encoding_pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    if threads <= 1 {
        return None;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("auditlake-encode-{i}"))
        .build()
        .map_err(|e| tracing::warn!("no Parquet encoding threads: {e}"))
        .ok()
        .map(Arc::new)
}

/// Number of Parquet leaf columns an Arrow type is stored as.
fn leaf_count(dt: &DataType) -> usize {
    match dt {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => leaf_count(f.data_type()),
        DataType::Struct(fs) => fs.iter().map(|f| leaf_count(f.data_type())).sum(),
        _ => 1,
    }
}

impl<W: Write + Send> ParquetFile<W> {
    pub fn try_new(
        out: W,
        schema: SchemaRef,
        props: WriterProperties,
        pool: Option<Arc<rayon::ThreadPool>>,
    ) -> Result<Self> {
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let (file, factory) =
            ArrowWriter::try_new(out, schema.clone(), Some(props))?.into_serialized_writer()?;
        let fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
        let leaves = fields.iter().map(|f| leaf_count(f.data_type())).collect();
        Ok(ParquetFile {
            file,
            factory,
            fields,
            leaves,
            open: None,
            buffered_rows: 0,
            max_rows,
            pool,
            sort: Vec::new(),
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
        })
    }

    /// Sort the rows of each row group by `columns` (ascending, nulls
    /// first). The row group's rows are held until it closes, or until
    /// [`ParquetFile::encode_pending`] is called to bound memory (the row
    /// group is then made of several sorted runs).
    pub fn sorted_by(mut self, columns: &[&str]) -> Result<Self> {
        self.sort = columns
            .iter()
            .map(|name| {
                self.fields
                    .iter()
                    .position(|f| f.name() == name)
                    .ok_or_else(|| {
                        ParquetError::General(format!("no column {name} to sort rows by"))
                    })
            })
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// Arrow bytes held for sorting, not yet encoded.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Append `batch` (of the file's schema) to the row group in progress,
    /// closing row groups as they fill.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_columns() != self.fields.len() {
            return Err(ParquetError::General(format!(
                "batch has {} columns, the file's schema {}",
                batch.num_columns(),
                self.fields.len()
            )));
        }
        let mut offset = 0;
        while offset < batch.num_rows() {
            let room = self.max_rows - self.buffered_rows - self.pending_rows;
            let n = room.min(batch.num_rows() - offset);
            // A slice shares the batch's buffers: no copy, whole or not.
            let slice = batch.slice(offset, n);
            if self.sort.is_empty() {
                self.encode(slice.num_rows(), |i| Ok(slice.column(i).clone()))?;
            } else {
                self.pending_bytes += slice
                    .columns()
                    .iter()
                    .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
                    .sum::<usize>();
                self.pending_rows += n;
                self.pending.push(slice);
            }
            offset += n;
            if self.buffered_rows + self.pending_rows >= self.max_rows {
                self.flush_row_group()?;
            }
        }
        Ok(())
    }

    /// Sort the rows held for the row group in progress and encode them (a
    /// sorted run; the row group stays open).
    pub fn encode_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut self.pending);
        let rows = self.pending_rows;
        self.pending_rows = 0;
        self.pending_bytes = 0;
        let failed = |e: arrow::error::ArrowError| {
            ParquetError::General(format!("sorting a row group's rows: {e}"))
        };
        let keys = self
            .sort
            .iter()
            .map(|&i| {
                let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
                Ok(SortColumn {
                    values: concat(&parts).map_err(failed)?,
                    options: Some(SortOptions {
                        descending: false,
                        nulls_first: true,
                    }),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let order = lexsort_to_indices(&keys, None).map_err(failed)?;
        drop(keys);
        // Row `g` of the run is row `g - starts[b]` of batch `b`.
        let mut starts = Vec::with_capacity(batches.len());
        let mut at = 0;
        for b in &batches {
            starts.push(at);
            at += b.num_rows();
        }
        let pairs: Vec<(usize, usize)> = order
            .values()
            .iter()
            .map(|&g| {
                let g = g as usize;
                let b = starts.partition_point(|&s| s <= g) - 1;
                (b, g - starts[b])
            })
            .collect();
        self.encode(rows, |i| {
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
            interleave(&parts, &pairs).map_err(failed)
        })
    }

    /// Encode `rows` rows into the row group in progress, column `i` being
    /// `column(i)` (called once per column, on the encoding thread).
    fn encode(
        &mut self,
        rows: usize,
        column: impl Fn(usize) -> Result<ArrayRef> + Sync,
    ) -> Result<()> {
        let groups = match self.open.take() {
            Some(groups) => groups,
            None => {
                let row_group = self.file.flushed_row_groups().len();
                let mut flat = self.factory.create_column_writers(row_group)?.into_iter();
                self.leaves
                    .iter()
                    .map(|&n| flat.by_ref().take(n).collect())
                    .collect()
            }
        };
        let groups = self.open.insert(groups);
        let fields = &self.fields;
        let encode_one = |(i, writers): (usize, &mut Vec<ArrowColumnWriter>)| -> Result<()> {
            let array = column(i)?;
            let leaves = compute_leaves(&fields[i], &array)?;
            for (leaf, w) in leaves.iter().zip(writers.iter_mut()) {
                w.write(leaf)?;
            }
            Ok(())
        };
        match &self.pool {
            Some(pool) => pool.install(|| {
                groups
                    .par_iter_mut()
                    .with_max_len(1)
                    .enumerate()
                    .try_for_each(encode_one)
            })?,
            None => groups.iter_mut().enumerate().try_for_each(encode_one)?,
        }
        self.buffered_rows += rows;
        Ok(())
    }

    /// Close the row group in progress (finishing every column chunk in
    /// parallel) and append it to the file.
    fn flush_row_group(&mut self) -> Result<()> {
        self.encode_pending()?;
        let Some(groups) = self.open.take() else {
            return Ok(());
        };
        self.buffered_rows = 0;
        let close = |writers: Vec<ArrowColumnWriter>| -> Result<Vec<ArrowColumnChunk>> {
            writers.into_iter().map(|w| w.close()).collect()
        };
        let chunks: Vec<Vec<ArrowColumnChunk>> = match &self.pool {
            Some(pool) => pool.install(|| {
                groups
                    .into_par_iter()
                    .with_max_len(1)
                    .map(close)
                    .collect::<Result<_>>()
            })?,
            None => groups.into_iter().map(close).collect::<Result<_>>()?,
        };
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks.into_iter().flatten() {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// Write the last row group and the footer; hand back the output.
    pub fn into_inner(mut self) -> Result<W> {
        self.flush_row_group()?;
        self.file.into_inner()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::record_schema;
    use crate::sinks::lake::batch::{BatchBuilder, RowContext};
    use crate::sinks::lake::{writer_properties, WriteOptions};

    /// A batch of `n` generated events.
    pub(crate) fn generated_batch(n: u64) -> RecordBatch {
        let text = crate::tools::gen::jsonl(n, 11);
        let text = std::str::from_utf8(&text).expect("generator writes UTF-8");
        let profiles = crate::profiles::Profiles::builtin();
        let ctx = RowContext {
            cluster: "c1",
            ingested_at_us: 1,
            envelope_cluster: false,
        };
        let mut b = BatchBuilder::new();
        for (i, line) in text.lines().enumerate() {
            crate::decode::decode_unit(
                line,
                |d| {
                    let r = crate::resolve::resolve(&d.event, &profiles);
                    b.append(&d, &r, &ctx, &format!("test:{i}"));
                },
                |r| panic!("generated event rejected: {:?}", r.error),
            );
        }
        b.finish().expect("batch builds")
    }

    fn props() -> WriterProperties {
        let opts = WriteOptions {
            // Small row groups so the batches below straddle several.
            row_group_rows: 700,
            ..WriteOptions::default()
        };
        writer_properties(&opts, "test")
    }

    fn with_arrow_writer(batches: &[RecordBatch]) -> Vec<u8> {
        let mut w =
            ArrowWriter::try_new(Vec::new(), record_schema(), Some(props())).expect("arrow writer");
        for b in batches {
            w.write(b).expect("arrow write");
        }
        w.into_inner().expect("arrow close")
    }

    fn with_parquet_file(batches: &[RecordBatch], threads: usize) -> Vec<u8> {
        let pool = encoding_pool(threads);
        assert_eq!(pool.is_some(), threads > 1, "pool of {threads}");
        let mut f =
            ParquetFile::try_new(Vec::new(), record_schema(), props(), pool).expect("parquet file");
        for b in batches {
            f.write(b).expect("write");
        }
        f.into_inner().expect("close")
    }

    /// 2000 rows in uneven pieces: 700-row groups fill across batch
    /// boundaries.
    fn uneven_pieces(batch: &RecordBatch) -> Vec<RecordBatch> {
        vec![
            batch.slice(0, 333),
            batch.slice(333, 1200),
            batch.slice(1533, 467),
        ]
    }

    #[test]
    fn parallel_encoding_writes_the_bytes_arrow_writer_writes() {
        let batch = generated_batch(2000);
        let batches = uneven_pieces(&batch);
        let expected = with_arrow_writer(&batches);
        assert_eq!(with_parquet_file(&batches, 1), expected, "serial");
        assert_eq!(with_parquet_file(&batches, 3), expected, "parallel");

        let reader = parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(expected))
            .expect("readable");
        use parquet::file::reader::FileReader;
        let md = reader.metadata();
        assert_eq!(md.file_metadata().num_rows(), 2000);
        // 700-row groups: 700 + 700 + 600.
        let groups: Vec<i64> = md.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, vec![700, 700, 600]);
    }

    /// `rows` of `batch` sorted by the lake's row order (the reference:
    /// concatenate, sort, take).
    fn sorted(batch: &RecordBatch, rows: std::ops::Range<usize>) -> RecordBatch {
        let part = batch.slice(rows.start, rows.len());
        let keys: Vec<SortColumn> = crate::sinks::lake::ROW_ORDER
            .iter()
            .map(|name| SortColumn {
                values: part.column_by_name(name).expect("sort column").clone(),
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: true,
                }),
            })
            .collect();
        let order = lexsort_to_indices(&keys, None).expect("sort");
        arrow::compute::take_record_batch(&part, &order).expect("take")
    }

    fn sorted_file(batches: &[RecordBatch], threads: usize, runs_at: &[usize]) -> Vec<u8> {
        let mut f =
            ParquetFile::try_new(Vec::new(), record_schema(), props(), encoding_pool(threads))
                .expect("parquet file")
                .sorted_by(&crate::sinks::lake::ROW_ORDER)
                .expect("sort columns exist");
        for (i, b) in batches.iter().enumerate() {
            f.write(b).expect("write");
            if runs_at.contains(&i) {
                f.encode_pending().expect("run");
            }
        }
        f.into_inner().expect("close")
    }

    #[test]
    fn a_sorted_file_holds_each_row_group_sorted() {
        let batch = generated_batch(2000);
        let batches = uneven_pieces(&batch);
        // Row groups of 700: each is its rows sorted, and nothing else
        // differs from what ArrowWriter writes for those rows.
        let expected = with_arrow_writer(&[
            sorted(&batch, 0..700),
            sorted(&batch, 700..1400),
            sorted(&batch, 1400..2000),
        ]);
        assert_ne!(
            expected,
            with_arrow_writer(&batches),
            "the sort changes the file"
        );
        assert_eq!(sorted_file(&batches, 1, &[]), expected, "serial");
        assert_eq!(sorted_file(&batches, 3, &[]), expected, "parallel");

        // Encoding early (to bound memory) makes sorted runs within a row
        // group: rows 0..333 are one run, 333..700 the next.
        let runs = with_arrow_writer(&[
            sorted(&batch, 0..333),
            sorted(&batch, 333..700),
            sorted(&batch, 700..1400),
            sorted(&batch, 1400..2000),
        ]);
        assert_eq!(sorted_file(&batches, 3, &[0]), runs, "runs");
    }

    #[test]
    fn sorting_by_a_column_the_schema_lacks_is_an_error() {
        let f = ParquetFile::try_new(Vec::new(), record_schema(), props(), None).expect("file");
        let e = f.sorted_by(&["no_such_column"]).err().expect("refused");
        assert!(e.to_string().contains("no_such_column"), "{e}");
    }

    #[test]
    fn a_batch_of_the_wrong_shape_is_an_error() {
        let mut f =
            ParquetFile::try_new(Vec::new(), record_schema(), props(), None).expect("parquet file");
        let other = RecordBatch::try_from_iter([(
            "x",
            Arc::new(arrow::array::Int32Array::from(vec![1, 2])) as arrow::array::ArrayRef,
        )])
        .expect("batch");
        assert!(f.write(&other).is_err());
    }
}
