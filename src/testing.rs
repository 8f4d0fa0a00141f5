//! Test support shared by the unit tests of several modules: a temporary directory that cleans
//! up after itself, and a way to run a future on a real glommio executor.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use glommio::{LocalExecutorBuilder, Placement};

/// A directory under the system's temporary directory, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name contains `name`.
    pub(crate) fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "hydrant-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
        TempDir(path)
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `make()`'s future to completion on a fresh glommio executor with little locked memory.
pub(crate) fn run<F, T>(make: impl FnOnce() -> F + Send + 'static) -> T
where
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 * 1024)
        .spawn(make)
        .unwrap_or_else(|error| panic!("cannot start an executor: {error}"))
        .join()
        .unwrap_or_else(|error| panic!("executor failed: {error}"))
}
