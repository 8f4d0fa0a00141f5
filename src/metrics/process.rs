//! What the process as a whole uses of memory, read from `/proc/self/status` (one small read
//! per snapshot period on the aggregating core; no allocator hooks, no FFI).

use std::path::Path;

/// Where Linux reports the process's memory.
const PROC_STATUS: &str = "/proc/self/status";

/// The process's memory figures; `None` where the system does not report one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Resident set size (`VmRSS`), in bytes.
    pub resident_bytes: Option<u64>,
    /// Resident anonymous memory (`RssAnon`), in bytes: the heap and the stacks, hydrant's
    /// counterpart of Mosquitto's `heap/current` (Rust's allocator keeps no running total).
    pub heap_bytes: Option<u64>,
}

impl ProcessMemory {
    /// Reads this process's figures; both are `None` where `/proc` is unavailable.
    #[must_use]
    pub fn read() -> Self {
        Self::read_from(Path::new(PROC_STATUS))
    }

    /// Reads the figures from a file in `/proc/<pid>/status` format.
    #[must_use]
    pub fn read_from(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// The figures in the text of a `/proc/<pid>/status` file.
    #[must_use]
    pub fn parse(status: &str) -> Self {
        let mut memory = ProcessMemory::default();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let slot = match key {
                "VmRSS" => &mut memory.resident_bytes,
                "RssAnon" => &mut memory.heap_bytes,
                _ => continue,
            };
            *slot = parse_kibibytes(value);
        }
        memory
    }
}

/// A `/proc` size such as `  1234 kB`, in bytes.
fn parse_kibibytes(value: &str) -> Option<u64> {
    let number = value.trim().strip_suffix("kB")?.trim();
    number.parse::<u64>().ok()?.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_figures_in_bytes() {
        let status = "Name:\thydrant\nVmPeak:\t  99999 kB\nVmRSS:\t    2048 kB\n\
                      RssAnon:\t     512 kB\nRssFile:\t    1536 kB\n";
        let memory = ProcessMemory::parse(status);
        assert_eq!(memory.resident_bytes, Some(2048 * 1024));
        assert_eq!(memory.heap_bytes, Some(512 * 1024));
    }

    #[test]
    fn missing_or_garbled_figures_are_none() {
        assert_eq!(ProcessMemory::parse(""), ProcessMemory::default());
        let memory = ProcessMemory::parse("VmRSS: lots\nRssAnon: 12 MB\n");
        assert_eq!(memory, ProcessMemory::default());
        assert_eq!(
            ProcessMemory::read_from(Path::new("/nonexistent/status")),
            ProcessMemory::default()
        );
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let memory = ProcessMemory::read();
        if Path::new(PROC_STATUS).exists() {
            assert!(memory.resident_bytes.unwrap_or(0) > 0);
            assert!(memory.heap_bytes.is_some());
        }
    }
}
