//! Where a core's files live and the file operations every part of persistence shares.
//!
//! ```text
//! <persistence_location>/core-<id>/snapshot          the live state as of some log generation
//!                                 /snapshot.tmp      a snapshot being written (never read)
//!                                 /log-<generation>  changes, one file per generation
//!                                 /<name>.corrupt-<unix seconds>   moved aside, never read
//! ```
//!
//! Each core has a directory of its own, so no two cores ever touch the same file. All I/O
//! on file contents goes through glommio (io_uring); listing a directory and creating it are
//! plain system calls, made only at start-up.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use glommio::io::{BufferedFile, Directory, OpenOptions};

use super::frame::{FileHeader, FileKind};

/// Name of the snapshot file.
const SNAPSHOT: &str = "snapshot";
/// Name of a snapshot being written.
const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// Prefix of log file names; the generation follows, zero-padded to 20 digits.
const LOG_PREFIX: &str = "log-";
/// Marker of a file moved aside.
const CORRUPT_MARKER: &str = ".corrupt-";
/// Prefix of a core's directory name.
const CORE_PREFIX: &str = "core-";

/// Bytes asked for per read when loading a file.
const READ_CHUNK: usize = 1024 * 1024;

/// The directory of one core's files.
#[derive(Clone, Debug)]
pub struct CoreDir {
    /// `<persistence_location>/core-<id>`.
    pub path: PathBuf,
    /// The core whose files these are (also written in every header).
    pub core: u64,
}

/// What a core's directory holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// Whether `snapshot` exists.
    pub snapshot: bool,
    /// Whether `snapshot.tmp` exists (a compaction was interrupted).
    pub snapshot_tmp: bool,
    /// Log files, by generation, oldest first.
    pub logs: Vec<(u64, PathBuf)>,
    /// Files moved aside earlier (kept for a person to look at; never read).
    pub moved_aside: Vec<PathBuf>,
}

impl CoreDir {
    /// The directory of core `core` under `location` (not created).
    pub fn new(location: &Path, core: u64) -> CoreDir {
        CoreDir {
            path: location.join(format!("{CORE_PREFIX}{core}")),
            core,
        }
    }

    /// Creates the directory (and its parents) if needed.
    pub fn create(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.path)
    }

    /// Path of the snapshot.
    pub fn snapshot_path(&self) -> PathBuf {
        self.path.join(SNAPSHOT)
    }

    /// Path of a snapshot being written.
    pub fn snapshot_tmp_path(&self) -> PathBuf {
        self.path.join(SNAPSHOT_TMP)
    }

    /// Path of the log of `generation`.
    pub fn log_path(&self, generation: u64) -> PathBuf {
        self.path.join(format!("{LOG_PREFIX}{generation:020}"))
    }

    /// Lists the directory's files (unknown names are left alone).
    pub fn list(&self) -> io::Result<Listing> {
        let mut listing = Listing::default();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.contains(CORRUPT_MARKER) {
                listing.moved_aside.push(entry.path());
            } else if name == SNAPSHOT {
                listing.snapshot = true;
            } else if name == SNAPSHOT_TMP {
                listing.snapshot_tmp = true;
            } else if let Some(generation) = name
                .strip_prefix(LOG_PREFIX)
                .and_then(|digits| digits.parse::<u64>().ok())
            {
                listing.logs.push((generation, entry.path()));
            }
        }
        listing
            .logs
            .sort_unstable_by_key(|(generation, _)| *generation);
        listing.moved_aside.sort_unstable();
        Ok(listing)
    }

    /// Makes the directory's entries durable (after a create, rename or remove).
    pub async fn sync(&self) -> io::Result<()> {
        let directory = Directory::open(&self.path).await?;
        let synced = directory.sync().await;
        directory.close().await?;
        Ok(synced?)
    }

    /// Renames `path` to `<path>.corrupt-<unix seconds>` (with a counter if that name is
    /// taken) and returns the new name.
    pub async fn move_aside(&self, path: &Path) -> io::Result<PathBuf> {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut target = suffixed(path, &format!("{CORRUPT_MARKER}{seconds}"));
        let mut attempt = 1;
        while target.exists() {
            target = suffixed(path, &format!("{CORRUPT_MARKER}{seconds}-{attempt}"));
            attempt += 1;
        }
        glommio::io::rename(path, &target).await?;
        Ok(target)
    }

    /// Creates the log of `generation` with its header, synced and durable in the directory.
    pub async fn create_log(&self, generation: u64) -> io::Result<BufferedFile> {
        let path = self.log_path(generation);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .buffered_open(&path)
            .await?;
        let header = FileHeader {
            kind: FileKind::Log,
            core: self.core,
            generation,
        };
        let written = async {
            write_all(&file, header.encode().to_vec(), 0).await?;
            file.fdatasync().await?;
            self.sync().await
        }
        .await;
        if let Err(error) = written {
            let _ = file.close().await;
            return Err(error);
        }
        Ok(file)
    }
}

/// `path` with `suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The cores that have a directory under `location`, in order: after a change of the number
/// of cores, the broker finds here the files of cores that no longer run.
pub fn stored_cores(location: &Path) -> io::Result<Vec<u64>> {
    let mut cores = Vec::new();
    for entry in std::fs::read_dir(location)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        if let Some(core) = name
            .to_str()
            .and_then(|name| name.strip_prefix(CORE_PREFIX))
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            cores.push(core);
        }
    }
    cores.sort_unstable();
    Ok(cores)
}

/// Writes all of `bytes` at `offset` and returns the offset after them. A short write is an
/// error: the kernel writes less than asked to a regular file only when the file system
/// refuses more (out of space, quota, file size limit), and retrying would only fail again.
pub async fn write_all(file: &BufferedFile, bytes: Vec<u8>, offset: u64) -> io::Result<u64> {
    let len = bytes.len();
    if len == 0 {
        return Ok(offset);
    }
    let written = file.write_at(bytes, offset).await?;
    if written < len {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write ({written} of {len} bytes): the file system is full"),
        ));
    }
    Ok(offset + len as u64)
}

/// Reads the whole file at `path`.
pub async fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let file = BufferedFile::open(path).await?;
    let read = async {
        let size = usize::try_from(file.file_size().await?).unwrap_or(usize::MAX);
        let mut contents = Vec::with_capacity(size.min(64 * READ_CHUNK));
        while contents.len() < size {
            let want = READ_CHUNK.min(size - contents.len());
            let chunk = file.read_at(contents.len() as u64, want).await?;
            if chunk.is_empty() {
                break;
            }
            contents.extend_from_slice(&chunk);
        }
        Ok::<_, io::Error>(contents)
    }
    .await;
    let _ = file.close().await;
    read
}

/// Shortens the file at `path` to `len` bytes, durably.
pub async fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).buffered_open(path).await?;
    let result = async {
        file.truncate(len).await?;
        file.fdatasync().await
    }
    .await;
    let _ = file.close().await;
    Ok(result?)
}

/// Size of the file at `path`.
pub fn file_len(path: &Path) -> io::Result<u64> {
    std::fs::metadata(path).map(|metadata| metadata.len())
}
