//! The file format around records, free of I/O: the file header, the checksummed frame of
//! each record, and the scan that reads a whole file back, skipping what is damaged.
//!
//! ```text
//! file   = header frame*
//! header = magic "HYDRANT\0" (8) | version u16 | kind u8 | 0 u8 | core u64 | generation u64
//!          | crc32c u32 of the 28 bytes before it                                 (32 bytes)
//! frame  = length u32 | type u8 | body (length - 1 bytes) | crc32c u32 of length, type, body
//! ```
//!
//! Integers are little-endian. The magic and the version come first and will stay where they
//! are in every future version, so a file from a newer hydrant is recognised as such and not
//! misread. A snapshot ends with a frame of type [`SNAPSHOT_END`] holding the number of
//! records before it, so a snapshot cut short is told apart from a complete one.
//!
//! Scanning never panics, whatever the bytes: a frame whose checksum fails is skipped (by its
//! length when that lands on a valid frame, else by searching forward for the next valid
//! frame) and reported with its offset; bytes after the last valid frame that hold no valid
//! frame are the *torn tail*, left by a write that a crash interrupted.

use std::fmt;

use crc32c::crc32c;

use super::record::{record_type, DecodeError, Record};

/// The first bytes of every hydrant persistence file.
pub const MAGIC: [u8; 8] = *b"HYDRANT\0";

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Size of the file header of version [`FORMAT_VERSION`].
pub const HEADER_LEN: usize = 32;

/// Bytes a frame adds around a body: length, type and checksum.
pub const FRAME_OVERHEAD: usize = 9;

/// Largest value of a frame's length field: a 256 MiB MQTT payload with its topic and
/// properties fits with room to spare; anything larger is damage, not data.
pub const MAX_FRAME_LEN: usize = 512 * 1024 * 1024;

/// Type byte of the frame that closes a snapshot.
pub const SNAPSHOT_END: u8 = 0x7F;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// An append-only log of changes.
    Log,
    /// A snapshot of the live state, written by compaction.
    Snapshot,
}

impl FileKind {
    fn to_byte(self) -> u8 {
        match self {
            FileKind::Log => 1,
            FileKind::Snapshot => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<FileKind> {
        match byte {
            1 => Some(FileKind::Log),
            2 => Some(FileKind::Snapshot),
            _ => None,
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Log => "log",
            FileKind::Snapshot => "snapshot",
        })
    }
}

/// The header at the start of every file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Log or snapshot.
    pub kind: FileKind,
    /// The core whose state the file holds.
    pub core: u64,
    /// For a log, its generation (the number in its name); for a snapshot, the first log
    /// generation it does *not* cover (every older log is folded into it).
    pub generation: u64,
}

/// Why a file's header cannot be read: the file is moved aside, whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The file is empty.
    #[error("the file is empty")]
    Empty,
    /// The file is shorter than a header.
    #[error("the file is shorter than a header ({0} bytes)")]
    TooShort(usize),
    /// The file does not start with the magic: not a hydrant file.
    #[error("not a hydrant persistence file (bad magic)")]
    BadMagic,
    /// Written by a hydrant with another format version (a newer one, most likely).
    #[error("unknown format version {0} (this build reads version {FORMAT_VERSION})")]
    UnknownVersion(u16),
    /// The header's checksum fails.
    #[error("the header checksum does not match")]
    BadChecksum,
    /// A file kind this version does not define.
    #[error("unknown file kind {0}")]
    UnknownKind(u8),
}

impl FileHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&MAGIC);
        header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[10] = self.kind.to_byte();
        header[12..20].copy_from_slice(&self.core.to_le_bytes());
        header[20..28].copy_from_slice(&self.generation.to_le_bytes());
        let crc = crc32c(&header[..28]);
        header[28..32].copy_from_slice(&crc.to_le_bytes());
        header
    }

    /// Reads the header at the start of `file`. The version is checked right after the magic,
    /// before anything whose layout a future version might change.
    pub fn decode(file: &[u8]) -> Result<FileHeader, HeaderError> {
        if file.is_empty() {
            return Err(HeaderError::Empty);
        }
        if file.len() < MAGIC.len() + 2 {
            return Err(HeaderError::TooShort(file.len()));
        }
        if file[..MAGIC.len()] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u16::from_le_bytes([file[8], file[9]]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnknownVersion(version));
        }
        let Some(header) = file.get(..HEADER_LEN) else {
            return Err(HeaderError::TooShort(file.len()));
        };
        if crc32c(&header[..28]).to_le_bytes() != header[28..32] {
            return Err(HeaderError::BadChecksum);
        }
        let kind = FileKind::from_byte(header[10]).ok_or(HeaderError::UnknownKind(header[10]))?;
        if header[11] != 0 {
            return Err(HeaderError::UnknownKind(header[11]));
        }
        Ok(FileHeader {
            kind,
            core: read_u64(&header[12..20]),
            generation: read_u64(&header[20..28]),
        })
    }
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    u64::from_le_bytes(array)
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(bytes);
    u32::from_le_bytes(array)
}

/// A frame too large to write (see [`MAX_FRAME_LEN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a record of {0} bytes is larger than the largest record ({MAX_FRAME_LEN} bytes)")]
pub struct FrameTooLarge(pub usize);

/// Appends `record` as a frame to `out`. On error `out` is left as it was.
pub fn encode_record(out: &mut Vec<u8>, record: &Record) -> Result<(), FrameTooLarge> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(record.type_byte());
    record.encode_body(out);
    finish_frame(out, start)
}

/// Appends the frame that closes a snapshot of `records` records.
pub fn encode_snapshot_end(out: &mut Vec<u8>, records: u64) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(SNAPSHOT_END);
    out.extend_from_slice(&records.to_le_bytes());
    // Nine bytes of length field and body: far below the limit.
    let _ = finish_frame(out, start);
}

/// Fills in the length of the frame that starts at `start` and appends its checksum.
fn finish_frame(out: &mut Vec<u8>, start: usize) -> Result<(), FrameTooLarge> {
    let len = out.len() - start - 4;
    let Some(len_field) = u32::try_from(len).ok().filter(|_| len <= MAX_FRAME_LEN) else {
        out.truncate(start);
        return Err(FrameTooLarge(len));
    };
    out[start..start + 4].copy_from_slice(&len_field.to_le_bytes());
    let crc = crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// One valid frame read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A record.
    Record(Record),
    /// The end of a snapshot, with the number of records before it.
    SnapshotEnd {
        /// Records the snapshot holds.
        records: u64,
    },
}

/// Why the bytes at some offset are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameDamage {
    /// The bytes end before the frame does (a torn write).
    #[error("incomplete frame")]
    Incomplete,
    /// The length field is 0 or above [`MAX_FRAME_LEN`].
    #[error("implausible frame length {0}")]
    BadLength(u32),
    /// A type byte no version of the format uses.
    #[error("unknown record type {0}")]
    UnknownType(u8),
    /// The checksum does not match.
    #[error("checksum mismatch")]
    BadChecksum,
    /// The checksum matches but the body does not decode.
    #[error("undecodable record: {0}")]
    Undecodable(DecodeError),
}

/// The outcome of checking the bytes at one offset.
enum Check {
    /// A frame whose checksum matches, ending at `end`.
    Valid { end: usize },
    /// Damage, and where the frame would end according to its length field, when plausible.
    Damaged {
        damage: FrameDamage,
        claimed_end: Option<usize>,
    },
}

/// Checks whether a frame with a valid checksum starts at `at` (decoding is done later).
fn check_frame(data: &[u8], at: usize) -> Check {
    let Some(head) = data.get(at..at.saturating_add(5)) else {
        return Check::Damaged {
            damage: FrameDamage::Incomplete,
            claimed_end: None,
        };
    };
    let len_field = read_u32(&head[..4]);
    let len = len_field as usize;
    if len == 0 || len > MAX_FRAME_LEN {
        return Check::Damaged {
            damage: FrameDamage::BadLength(len_field),
            claimed_end: None,
        };
    }
    let type_byte = head[4];
    if !record_type::is_record(type_byte) && type_byte != SNAPSHOT_END {
        return Check::Damaged {
            damage: FrameDamage::UnknownType(type_byte),
            claimed_end: None,
        };
    }
    let end = at + 4 + len + 4;
    let Some(frame) = data.get(at..end) else {
        return Check::Damaged {
            damage: FrameDamage::Incomplete,
            claimed_end: None,
        };
    };
    let (covered, crc) = frame.split_at(4 + len);
    if crc32c(covered).to_le_bytes() != crc {
        return Check::Damaged {
            damage: FrameDamage::BadChecksum,
            claimed_end: Some(end),
        };
    }
    Check::Valid { end }
}

/// Decodes the frame at `at`, known to be valid by `check_frame`, ending at `end`.
fn decode_frame(data: &[u8], at: usize, end: usize) -> Result<Entry, FrameDamage> {
    let type_byte = data[at + 4];
    let body = &data[at + 5..end - 4];
    if type_byte == SNAPSHOT_END {
        return match body.len() {
            8 => Ok(Entry::SnapshotEnd {
                records: read_u64(body),
            }),
            _ => Err(FrameDamage::Undecodable(DecodeError::Truncated)),
        };
    }
    Record::decode_body(type_byte, body)
        .map(Entry::Record)
        .map_err(FrameDamage::Undecodable)
}

/// A stretch of a file that was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Offset of the first skipped byte in the file.
    pub offset: u64,
    /// Bytes skipped.
    pub len: u64,
    /// What was wrong at `offset`.
    pub damage: FrameDamage,
}

/// Bytes at the end of a file that hold no valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Offset of the first byte of the tail: the end of the last valid frame.
    pub offset: u64,
    /// Bytes in the tail.
    pub len: u64,
    /// What was wrong at `offset`.
    pub damage: FrameDamage,
}

/// Everything read from the frames of one file.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid entries in file order, each with its offset.
    pub entries: Vec<(u64, Entry)>,
    /// Damaged stretches followed by valid frames.
    pub skipped: Vec<Skipped>,
    /// Damaged bytes at the end, if any.
    pub torn_tail: Option<TornTail>,
    /// End of the last valid frame (the header's end when there is none).
    pub valid_end: u64,
}

/// Reads every frame of `file` after its header of `HEADER_LEN` bytes.
pub fn scan_frames(file: &[u8]) -> Scan {
    let mut scan = Scan {
        valid_end: HEADER_LEN.min(file.len()) as u64,
        ..Scan::default()
    };
    let mut at = HEADER_LEN;
    while at < file.len() {
        match check_frame(file, at) {
            Check::Valid { end } => {
                match decode_frame(file, at, end) {
                    Ok(entry) => scan.entries.push((at as u64, entry)),
                    // A checksum that matches over an undecodable body: skip the frame.
                    Err(damage) => scan.skipped.push(Skipped {
                        offset: at as u64,
                        len: (end - at) as u64,
                        damage,
                    }),
                }
                scan.valid_end = end as u64;
                at = end;
            }
            Check::Damaged {
                damage,
                claimed_end,
            } => {
                // Prefer the frame's own length when it lands exactly on a valid frame: only
                // the body was damaged. Otherwise search byte by byte.
                let resume = claimed_end
                    .filter(|&end| matches!(check_frame(file, end), Check::Valid { .. }))
                    .or_else(|| next_valid_frame(file, at + 1));
                match resume {
                    Some(next) => {
                        scan.skipped.push(Skipped {
                            offset: at as u64,
                            len: (next - at) as u64,
                            damage,
                        });
                        at = next;
                    }
                    None => {
                        scan.torn_tail = Some(TornTail {
                            offset: at as u64,
                            len: (file.len() - at) as u64,
                            damage,
                        });
                        break;
                    }
                }
            }
        }
    }
    scan
}

/// The first offset from `from` where a frame with a valid checksum starts.
fn next_valid_frame(file: &[u8], from: usize) -> Option<usize> {
    (from..file.len().saturating_sub(FRAME_OVERHEAD - 1))
        .find(|&at| matches!(check_frame(file, at), Check::Valid { .. }))
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::every_kind;
    use super::super::testing::Rng;
    use super::*;

    fn header() -> FileHeader {
        FileHeader {
            kind: FileKind::Log,
            core: 3,
            generation: 17,
        }
    }

    /// A file holding every kind of record; returns it and the offset of each frame.
    fn sample_file() -> (Vec<u8>, Vec<usize>) {
        let mut file = header().encode().to_vec();
        let mut offsets = Vec::new();
        for record in every_kind() {
            offsets.push(file.len());
            encode_record(&mut file, &record).unwrap_or_default();
        }
        (file, offsets)
    }

    fn records(scan: &Scan) -> Vec<Record> {
        scan.entries
            .iter()
            .filter_map(|(_, entry)| match entry {
                Entry::Record(record) => Some(record.clone()),
                Entry::SnapshotEnd { .. } => None,
            })
            .collect()
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let bytes = header().encode();
        assert_eq!(FileHeader::decode(&bytes), Ok(header()));
        assert_eq!(FileHeader::decode(&[]), Err(HeaderError::Empty));
        assert_eq!(
            FileHeader::decode(&bytes[..5]),
            Err(HeaderError::TooShort(5))
        );
        assert_eq!(
            FileHeader::decode(&bytes[..20]),
            Err(HeaderError::TooShort(20))
        );
        let mut future = bytes;
        future[8..10].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            FileHeader::decode(&future),
            Err(HeaderError::UnknownVersion(2))
        );
        // A newer version is recognised from its first ten bytes alone.
        assert_eq!(
            FileHeader::decode(&future[..10]),
            Err(HeaderError::UnknownVersion(2))
        );
        let mut flipped = bytes;
        flipped[22] ^= 0x10;
        assert_eq!(FileHeader::decode(&flipped), Err(HeaderError::BadChecksum));
        let mut foreign = bytes;
        foreign[0] = b'X';
        assert_eq!(FileHeader::decode(&foreign), Err(HeaderError::BadMagic));
    }

    #[test]
    fn frame_layout_is_the_documented_one() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283, "CRC32C (Castagnoli)");
        let mut frame = Vec::new();
        let record = Record::RetainedCleared {
            topic: bytes::Bytes::from_static(b"a"),
        };
        encode_record(&mut frame, &record).unwrap_or_default();
        assert_eq!(frame[..10], [6, 0, 0, 0, 2, 1, 0, 0, 0, b'a']);
        assert_eq!(frame[10..], crc32c(&frame[..10]).to_le_bytes());
        let header = header().encode();
        assert_eq!(header[..12], *b"HYDRANT\0\x01\x00\x01\x00");
    }

    #[test]
    fn every_kind_round_trips_through_frames() {
        let (file, offsets) = sample_file();
        let scan = scan_frames(&file);
        assert_eq!(records(&scan), every_kind());
        let read_offsets: Vec<usize> = scan.entries.iter().map(|(at, _)| *at as usize).collect();
        assert_eq!(read_offsets, offsets);
        assert!(scan.skipped.is_empty());
        assert_eq!(scan.torn_tail, None);
        assert_eq!(scan.valid_end, file.len() as u64);
    }

    #[test]
    fn snapshot_end_round_trips() {
        let mut file = header().encode().to_vec();
        encode_snapshot_end(&mut file, 12345);
        let scan = scan_frames(&file);
        assert_eq!(
            scan.entries,
            vec![(HEADER_LEN as u64, Entry::SnapshotEnd { records: 12345 })]
        );
    }

    #[test]
    fn a_cut_at_every_offset_of_the_last_frame_is_a_torn_tail() {
        let (file, offsets) = sample_file();
        let last = *offsets.last().unwrap_or(&HEADER_LEN);
        let expected = every_kind();
        for cut in last..file.len() {
            let scan = scan_frames(&file[..cut]);
            assert_eq!(records(&scan), expected[..expected.len() - 1], "cut {cut}");
            assert_eq!(scan.valid_end, last as u64);
            assert!(scan.skipped.is_empty());
            match scan.torn_tail {
                None => assert_eq!(cut, last),
                Some(tail) => {
                    assert_eq!(tail.offset, last as u64);
                    assert_eq!(tail.len, (cut - last) as u64);
                }
            }
        }
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let (file, offsets) = sample_file();
        let expected = every_kind();
        for (index, window) in offsets.windows(2).enumerate() {
            for at in window[0]..window[1] {
                let mut damaged = file.clone();
                damaged[at] ^= 0x5A;
                let scan = scan_frames(&damaged);
                let mut kept = expected.clone();
                kept.remove(index);
                assert_eq!(records(&scan), kept, "flip at {at} (record {index})");
                assert_eq!(scan.skipped.len(), 1, "flip at {at}");
                assert_eq!(scan.skipped[0].offset, window[0] as u64);
                assert_eq!(scan.skipped[0].len, (window[1] - window[0]) as u64);
                assert_eq!(scan.torn_tail, None);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_and_find_nothing() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..300 {
            let len = rng.below(4096) as usize;
            let mut file: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if round % 2 == 0 && file.len() >= HEADER_LEN {
                file[..HEADER_LEN].copy_from_slice(&header().encode());
            }
            let _ = FileHeader::decode(&file);
            let scan = scan_frames(&file);
            assert!(scan.valid_end as usize <= file.len().max(HEADER_LEN));
        }
    }

    #[test]
    fn mutated_files_never_panic_and_keep_their_order() {
        let (file, _) = sample_file();
        let expected = every_kind();
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..2000 {
            let mut mutated = file.clone();
            for _ in 0..1 + rng.below(8) {
                match rng.below(4) {
                    0 => {
                        let at = rng.below(mutated.len() as u64) as usize;
                        mutated[at] = rng.next() as u8;
                    }
                    1 => {
                        let at = rng.below(mutated.len() as u64) as usize;
                        mutated.remove(at);
                    }
                    2 => {
                        let at = rng.below(mutated.len() as u64) as usize;
                        mutated.insert(at, rng.next() as u8);
                    }
                    _ => {
                        let cut = rng.below(mutated.len() as u64) as usize;
                        mutated.truncate(cut.max(1));
                    }
                }
                if mutated.is_empty() {
                    break;
                }
            }
            let _ = FileHeader::decode(&mutated);
            let scan = scan_frames(&mutated);
            // Whatever survives is a subsequence of what was written, in order.
            let mut remaining = expected.iter();
            for record in records(&scan) {
                assert!(
                    remaining.any(|candidate| *candidate == record),
                    "a record was invented or reordered: {record:?}"
                );
            }
        }
    }

    #[test]
    fn an_oversized_record_is_refused_and_leaves_the_buffer_intact() {
        let record = Record::RetainedCleared {
            topic: bytes::Bytes::from(vec![b'a'; MAX_FRAME_LEN]),
        };
        let mut out = vec![1, 2, 3];
        assert!(encode_record(&mut out, &record).is_err());
        assert_eq!(out, vec![1, 2, 3]);
    }
}
