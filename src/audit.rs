//! `superhero audit`: reads the tables under OUTPUT_DIR back and reports games, rows,
//! files, games written more than once, games present in only one table, and whether
//! every file has the exact schema and the gzip codec.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use arrow_array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use serde::Serialize;
use thiserror::Error;

use crate::etl::tables::{EXTENSION, Table};

/// The `audit --json` summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Distinct games in either table.
    pub games: u64,
    pub meta_rows: u64,
    pub podium_rows: u64,
    pub files: u64,
    /// Games found in more than one file of a table (written by more than one worker).
    pub duplicate_games: u64,
    /// Games found in one table but not the other.
    pub incomplete_games: u64,
    /// Every file has the exact field names and types, and only the gzip codec.
    pub schema_ok: bool,
    /// Files that could not be read or do not match the schema, with the reason.
    pub bad_files: Vec<String>,
}

impl AuditReport {
    /// Whether the output is exactly what the workers should have written.
    pub fn is_clean(&self) -> bool {
        self.schema_ok && self.duplicate_games == 0 && self.incomplete_games == 0
    }
}

/// The report and, for each game, how many files of each table hold it.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    pub report: AuditReport,
    pub files_per_game: HashMap<String, [u32; 2]>,
}

impl Audit {
    /// The games written to both tables.
    pub fn complete_games(&self) -> HashSet<&str> {
        self.files_per_game
            .iter()
            .filter(|(_, n)| n[0] > 0 && n[1] > 0)
            .map(|(g, _)| g.as_str())
            .collect()
    }
}

#[derive(Debug, Error)]
/// Why the output could not be read.
pub enum AuditError {
    #[error("reading {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

/// The table files under `output_dir` whose name passes `keep`, by table, sorted by
/// name. Temporary files (a leading dot) are not tables yet.
pub fn table_files(
    output_dir: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<BTreeMap<Table, Vec<PathBuf>>, AuditError> {
    let mut out = BTreeMap::new();
    for table in Table::ALL {
        let dir = table.dir(output_dir);
        let mut files = Vec::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|cause| AuditError::Io {
                        path: dir.clone(),
                        cause,
                    })?;
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    if !name.starts_with('.')
                        && name.ends_with(&format!(".{EXTENSION}"))
                        && keep(&name)
                    {
                        files.push(entry.path());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(cause) => return Err(AuditError::Io { path: dir, cause }),
        }
        files.sort();
        out.insert(table, files);
    }
    Ok(out)
}

/// What one file holds.
struct FileContents {
    rows: u64,
    games: HashSet<String>,
}

/// Reads one table file, checking its schema and codec.
fn read_file(table: Table, path: &Path) -> Result<FileContents, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let expected = table.schema();
    let actual = builder.schema();
    let same = actual.fields().len() == expected.fields().len()
        && actual
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(a, e)| a.name() == e.name() && a.data_type() == e.data_type());
    if !same {
        let describe = |s: &arrow_schema::Schema| {
            s.fields()
                .iter()
                .map(|f| format!("{}: {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "schema is [{}], expected [{}]",
            describe(actual),
            describe(&expected)
        ));
    }
    for rg in builder.metadata().row_groups() {
        for col in rg.columns() {
            if !matches!(col.compression(), Compression::GZIP(_)) {
                return Err(format!(
                    "column {} is compressed with {:?}, not gzip",
                    col.column_path(),
                    col.compression()
                ));
            }
        }
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    let mut contents = FileContents {
        rows: 0,
        games: HashSet::new(),
    };
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        contents.rows += batch.num_rows() as u64;
        let tokens = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("game_token is not a string column")?;
        for i in 0..tokens.len() {
            if tokens.is_valid(i) {
                contents.games.insert(tokens.value(i).to_string());
            }
        }
    }
    Ok(contents)
}

/// Audits the tables under `output_dir`.
pub fn audit(output_dir: &Path) -> Result<Audit, AuditError> {
    audit_matching(output_dir, |_| true)
}

/// Audits the table files whose name passes `keep` (say, one run's workers').
pub fn audit_matching(output_dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Audit, AuditError> {
    let files = table_files(output_dir, keep)?;
    let mut audit = Audit::default();
    let r = &mut audit.report;
    r.schema_ok = true;
    for (table, paths) in &files {
        let slot = match table {
            Table::Meta => 0,
            Table::Podium => 1,
        };
        for path in paths {
            r.files += 1;
            match read_file(*table, path) {
                Ok(contents) => {
                    match table {
                        Table::Meta => r.meta_rows += contents.rows,
                        Table::Podium => r.podium_rows += contents.rows,
                    }
                    for game in contents.games {
                        audit.files_per_game.entry(game).or_default()[slot] += 1;
                    }
                }
                Err(reason) => {
                    r.schema_ok = false;
                    r.bad_files.push(format!("{}: {reason}", path.display()));
                }
            }
        }
    }
    r.games = audit.files_per_game.len() as u64;
    r.duplicate_games = audit
        .files_per_game
        .values()
        .filter(|n| n[0] > 1 || n[1] > 1)
        .count() as u64;
    r.incomplete_games = audit
        .files_per_game
        .values()
        .filter(|n| (n[0] == 0) != (n[1] == 0))
        .count() as u64;
    Ok(audit)
}
