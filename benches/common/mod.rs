//! What the benches share: where they write, and the disk's own rate.

use std::path::{Path, PathBuf};
use std::time::Instant;

use superhero::etl::tables::{self, Table};

/// A fresh folder under SUPERHERO_BENCH_DIR (default ./bench-data), which must be on
/// the disk to measure it, not a tmpfs.
pub fn bench_dir() -> PathBuf {
    let root = std::env::var("SUPERHERO_BENCH_DIR").unwrap_or_else(|_| "./bench-data".into());
    PathBuf::from(root).join(uuid::Uuid::new_v4().simple().to_string())
}

/// Files per second the disk takes when each of `n` files of `bytes` is written as a
/// worker writes a table: to a temporary name, fsynced, renamed, its folder fsynced.
pub fn disk_rate(dir: &Path, bytes: &[u8], n: usize) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        tables::write_durable(dir, &format!("disk-{i}"), &[(Table::Meta, bytes.to_vec())])
            .expect("the bench folder is writable");
    }
    n as f64 / started.elapsed().as_secs_f64()
}
