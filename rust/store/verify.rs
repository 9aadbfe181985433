//! A full integrity check of an open store.

use super::format;
use super::Store;
use crate::hashing::blake3;

/// What `verify` found. `faults` empty means every check passed.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Segments read and checked, the open one included.
    pub segments_checked: u64,
    /// Records whose checksums were checked.
    pub records_checked: u64,
    /// Bytes of segment data read (for the open segment, its records; not the space reserved after
    /// them).
    pub bytes_checked: u64,
    /// Every check that failed, one line each naming the file and what is wrong.
    pub faults: Vec<String>,
    /// Sequence ranges an origin's chain does not hold (evicted or never received).
    pub gaps: Vec<String>,
}

impl Store {
    /// Re-reads every segment: hash against the name, structure, every record
    /// checksum, the chain links between held segments, and usage against the
    /// ceiling. `progress(done_bytes, total_bytes)` is called after each segment.
    pub fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> VerifyReport {
        let segments = self.segments();
        let total: u64 = segments.iter().map(|s| s.size).sum();
        let mut report = VerifyReport::default();
        let mut last: Option<&super::SegmentInfo> = None;
        for info in &segments {
            let path = match info.id {
                Some(id) => self.segment_path(&id),
                None => self.open_path(),
            };
            let bytes = match self.shared.storage.read(&path) {
                Ok(bytes) => bytes,
                Err(err) => {
                    report
                        .faults
                        .push(format!("{}: cannot read: {err}", path.display()));
                    continue;
                }
            };
            let name = path.display();
            if let Some(id) = info.id {
                let actual = blake3(&bytes);
                if actual != id {
                    report
                        .faults
                        .push(format!("{name}: bytes hash to {actual}, not to the name"));
                }
                match format::parse_sealed(&bytes) {
                    Ok(scan) => report.records_checked += scan.records.len() as u64,
                    Err(err) => report.faults.push(format!("{name}: {err}")),
                }
            } else {
                let len = (info.size as usize).min(bytes.len());
                match format::scan(&bytes[..len]) {
                    Ok(scan) if scan.damage.is_none() => {
                        report.records_checked += scan.records.len() as u64
                    }
                    Ok(scan) => report.faults.push(format!(
                        "{name}: {}",
                        scan.damage.map(|d| d.to_string()).unwrap_or_default()
                    )),
                    Err(err) => report.faults.push(format!("{name}: {err}")),
                }
            }
            if let Some(prev) = last.filter(|p| p.origin == info.origin) {
                if info.seq == prev.seq + 1 && info.prev != prev.id {
                    report.faults.push(format!(
                        "chain of {} broken: seq {} does not name seq {} ({}) as previous",
                        info.origin,
                        info.seq,
                        prev.seq,
                        prev.id.map(|d| d.to_string()).unwrap_or_default()
                    ));
                } else if info.seq > prev.seq + 1 {
                    report.gaps.push(format!(
                        "{}: seq {}..{} not held",
                        info.origin,
                        prev.seq + 1,
                        info.seq - 1
                    ));
                }
            }
            last = Some(info);
            report.segments_checked += 1;
            // Reserved zeros after the open segment's records are not data.
            report.bytes_checked += if info.sealed {
                bytes.len() as u64
            } else {
                info.size.min(bytes.len() as u64)
            };
            progress(report.bytes_checked, total);
        }
        let usage = self.usage();
        if usage.bytes_used > usage.ceiling_bytes {
            report.faults.push(format!(
                "usage {} bytes is over the ceiling of {} bytes",
                usage.bytes_used, usage.ceiling_bytes
            ));
        }
        report
    }
}
