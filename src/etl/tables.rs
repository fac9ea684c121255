//! The Parquet tables: their exact schemas, rows to Arrow batches, gzip Parquet bytes,
//! and durable files (written under a temporary name, fsynced, renamed).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt8Array, UInt16Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel};
use parquet::file::properties::WriterProperties;
use thiserror::Error;

use super::{GameTables, MetaRow, PodiumRow};

/// Root folder of the tables under OUTPUT_DIR.
pub const ROOT: &str = "superhero";
/// Extension of the table files (gzip-compressed Parquet, as the original named them).
pub const EXTENSION: &str = "gz";

/// The two tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Meta,
    Podium,
}

impl Table {
    /// Both tables, in the order they are written.
    pub const ALL: [Table; 2] = [Table::Meta, Table::Podium];

    /// The table's name, also its folder under `OUTPUT_DIR/superhero/`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Meta => "GAME_META",
            Self::Podium => "GAME_PODIUM",
        }
    }

    /// The exact schema: field names, types and order.
    pub fn schema(self) -> SchemaRef {
        let utf8 = |name| Field::new(name, DataType::Utf8, false);
        let fields = match self {
            Self::Meta => vec![
                utf8("game_token"),
                utf8("user_token"),
                Field::new("superhero_id", DataType::UInt16, false),
            ],
            Self::Podium => vec![
                utf8("game_token"),
                utf8("user_token"),
                Field::new("rank", DataType::UInt8, false),
                Field::new("rounds", DataType::UInt16, false),
                Field::new("damage_received", DataType::UInt64, false),
                Field::new("damage_sent", DataType::UInt64, false),
            ],
        };
        Arc::new(Schema::new(fields))
    }

    /// `OUTPUT_DIR/superhero/<TABLE>`.
    pub fn dir(self, output_dir: &Path) -> PathBuf {
        output_dir.join(ROOT).join(self.name())
    }
}

#[derive(Debug, Error)]
/// Why a table file could not be encoded or written.
pub enum TableError {
    #[error("encoding {table}: {cause}")]
    Encode {
        table: &'static str,
        cause: parquet::errors::ParquetError,
    },
    #[error("building {table}: {cause}")]
    Arrow {
        table: &'static str,
        cause: arrow_schema::ArrowError,
    },
    #[error("writing {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// GAME_META rows as one Arrow batch, in the table's schema.
pub fn meta_batch(rows: &[MetaRow]) -> Result<RecordBatch, TableError> {
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.game_token.as_str())),
        strings(rows.iter().map(|r| r.user_token.as_str())),
        Arc::new(UInt16Array::from_iter_values(
            rows.iter().map(|r| r.superhero_id),
        )),
    ];
    RecordBatch::try_new(Table::Meta.schema(), columns).map_err(|cause| TableError::Arrow {
        table: Table::Meta.name(),
        cause,
    })
}

/// GAME_PODIUM rows as one Arrow batch, in the table's schema.
pub fn podium_batch(rows: &[PodiumRow]) -> Result<RecordBatch, TableError> {
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.game_token.as_str())),
        strings(rows.iter().map(|r| r.user_token.as_str())),
        Arc::new(UInt8Array::from_iter_values(rows.iter().map(|r| r.rank))),
        Arc::new(UInt16Array::from_iter_values(rows.iter().map(|r| r.rounds))),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.damage_received),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.damage_sent),
        )),
    ];
    RecordBatch::try_new(Table::Podium.schema(), columns).map_err(|cause| TableError::Arrow {
        table: Table::Podium.name(),
        cause,
    })
}

/// One batch as a gzip-compressed Parquet file's bytes.
pub fn to_parquet(table: Table, batch: &RecordBatch) -> Result<Vec<u8>, TableError> {
    let encode = |cause| TableError::Encode {
        table: table.name(),
        cause,
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::GZIP(GzipLevel::default()))
        .set_created_by(format!("superhero {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut out = Vec::with_capacity(4096);
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).map_err(encode)?;
    writer.write(batch).map_err(encode)?;
    writer.close().map_err(encode)?;
    Ok(out)
}

/// Both tables of some games as Parquet bytes: (GAME_META, GAME_PODIUM).
pub fn encode_games(games: &[GameTables]) -> Result<[(Table, Vec<u8>); 2], TableError> {
    let meta: Vec<MetaRow> = games.iter().flat_map(|g| g.meta.iter().cloned()).collect();
    let podium: Vec<PodiumRow> = games
        .iter()
        .flat_map(|g| g.podium.iter().cloned())
        .collect();
    Ok([
        (Table::Meta, to_parquet(Table::Meta, &meta_batch(&meta)?)?),
        (
            Table::Podium,
            to_parquet(Table::Podium, &podium_batch(&podium)?)?,
        ),
    ])
}

/// Whether the files of `stem` were committed. The tables are renamed in
/// [`Table::ALL`] order and GAME_PODIUM last, so its file exists only once every
/// table's does, and when GAME_META's is absent no write of `stem` renamed anything:
/// a stem never written takes one look. With `hide`, what a write that died between
/// its renames left (the tables renamed before it died) goes to a hidden name, as the
/// temporaries have, so that readers do not count those games twice once they are
/// written again.
pub fn committed_or_hide(output_dir: &Path, stem: &str, hide: bool) -> Result<bool, TableError> {
    let file = |table: Table| table.dir(output_dir).join(format!("{stem}.{EXTENSION}"));
    let first = file(Table::Meta);
    if !first.exists() {
        return Ok(false);
    }
    if file(Table::Podium).exists() {
        return Ok(true);
    }
    if hide {
        let hidden = first.with_file_name(format!(".{stem}.{EXTENSION}.uncommitted"));
        fs::rename(&first, &hidden).map_err(|cause| TableError::Io { path: first, cause })?;
    }
    Ok(false)
}

/// Writes each table's bytes to `OUTPUT_DIR/superhero/<TABLE>/<stem>.gz` durably:
/// every file goes to a temporary name and is fsynced first, then all are renamed and
/// their folders fsynced. A crash leaves either a complete file or a hidden temporary.
pub fn write_durable(
    output_dir: &Path,
    stem: &str,
    files: &[(Table, Vec<u8>)],
) -> Result<Vec<PathBuf>, TableError> {
    let mut staged = Vec::with_capacity(files.len());
    for (table, bytes) in files {
        let dir = table.dir(output_dir);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| TableError::Io { path, cause }
        };
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let tmp = dir.join(format!(".{stem}.{EXTENSION}.tmp"));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        staged.push((dir.clone(), tmp, dir.join(format!("{stem}.{EXTENSION}"))));
    }
    let mut written = Vec::with_capacity(staged.len());
    for (dir, tmp, path) in staged {
        fs::rename(&tmp, &path).map_err(|cause| TableError::Io {
            path: path.clone(),
            cause,
        })?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|cause| TableError::Io {
                path: dir.clone(),
                cause,
            })?;
        written.push(path);
    }
    Ok(written)
}
