//! Reading records and whole segments, and importing segments from peers.

use super::commit::SegmentMeta;
use super::error::{Result, StoreError};
use super::format::{self, Scan};
use super::Store;
use crate::hashing::{blake3, require_role, Digest, HashRole};

impl Store {
    /// The bytes of sealed segment `id`, checked against the id before they are
    /// returned: a segment whose bytes changed on disk is never served.
    pub fn get_segment(&self, id: &Digest) -> Result<Vec<u8>> {
        require_role(id, HashRole::SegmentId)
            .map_err(|err| StoreError::Invalid(err.to_string()))?;
        {
            let st = self.shared.lock();
            self.shared.usable(&st)?;
            if !st.segments.contains_key(id) {
                return Err(StoreError::NotFound(id.to_string()));
            }
        }
        let path = self.segment_path(id);
        let bytes = self
            .shared
            .storage
            .read(&path)
            .map_err(|err| StoreError::io("read segment", &path, err))?;
        let actual = blake3(&bytes);
        if actual != *id {
            return Err(StoreError::Corrupt(format!(
                "{} changed on disk: its bytes hash to {actual}; run `vedette store verify`",
                path.display()
            )));
        }
        Ok(bytes)
    }

    /// Records of `origin` (default: this node) with positions after `since`,
    /// from one segment: the first that has any. Empty when there are no more.
    /// Every record returned has passed its checksum (sealed: the segment hash).
    pub fn read_records(
        &self,
        origin: Option<&str>,
        since: Option<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let origin = origin.unwrap_or(&self.shared.config.node_id).to_string();
        let from = since.map_or(0, |s| s.saturating_add(1));
        let (sealed, open_len) = {
            let st = self.shared.lock();
            self.shared.usable(&st)?;
            let sealed: Option<SegmentMeta> = st
                .by_origin
                .range((origin.clone(), 0)..=(origin.clone(), u64::MAX))
                .filter_map(|(_, id)| st.segments.get(id))
                .find(|m| m.header.first_record + m.record_count > from)
                .cloned();
            let open_len = st
                .open
                .as_ref()
                .filter(|o| {
                    o.header.origin == origin && o.header.first_record + o.written_records > from
                })
                .map(|o| o.written_len);
            (sealed, open_len)
        };
        let (bytes, scan) = if let Some(meta) = sealed {
            let bytes = self.get_segment(&meta.id)?;
            let scan = format::parse_sealed(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", meta.id)))?;
            (bytes, scan)
        } else if let Some(len) = open_len {
            let path = self.open_path();
            let mut bytes = self
                .shared
                .storage
                .read(&path)
                .map_err(|err| StoreError::io("read open segment", &path, err))?;
            bytes.truncate(len as usize);
            let scan: Scan = format::scan(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("open segment: {e}")))?;
            (bytes, scan)
        } else {
            return Ok(Vec::new());
        };
        Ok(scan
            .records
            .iter()
            .filter(|r| r.record_no >= from)
            .map(|r| (r.record_no, bytes[r.start..r.start + r.len].to_vec()))
            .collect())
    }

    /// Per origin, the next sequence after the contiguous run from 0 of
    /// segments held or evicted here: what a peer need not send (the sync
    /// protocol's HELLO frontier). Origins with nothing from 0 are left out.
    pub fn frontiers(&self) -> Vec<(String, u64)> {
        let st = self.shared.lock();
        let mut seqs: std::collections::BTreeSet<(&str, u64)> = st
            .by_origin
            .keys()
            .map(|(origin, seq)| (origin.as_str(), *seq))
            .collect();
        seqs.extend(st.catalog.evicted.keys().map(|(o, s)| (o.as_str(), *s)));
        let mut out: Vec<(String, u64)> = Vec::new();
        let mut current: Option<(&str, u64)> = None;
        for (origin, seq) in seqs {
            match current {
                Some((o, next)) if o == origin => {
                    if seq == next {
                        current = Some((o, next + 1));
                    }
                }
                _ => {
                    if let Some((o, next)) = current.take() {
                        out.push((o.to_string(), next));
                    }
                    if seq == 0 {
                        current = Some((origin, 1));
                    } else {
                        current = Some((origin, 0));
                    }
                }
            }
        }
        if let Some((o, next)) = current {
            out.push((o.to_string(), next));
        }
        out.retain(|(_, next)| *next > 0);
        out
    }

    /// Where segment `seq` of `origin` stands here: held (with its id),
    /// evicted, or never seen.
    pub fn segment_status(&self, origin: &str, seq: u64) -> SegmentStatus {
        let st = self.shared.lock();
        let key = (origin.to_string(), seq);
        if let Some(id) = st.by_origin.get(&key) {
            return SegmentStatus::Held(*id);
        }
        if st.catalog.evicted.contains_key(&key) {
            return SegmentStatus::Evicted;
        }
        SegmentStatus::Missing
    }
}

/// See [`Store::segment_status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentStatus {
    /// The store holds it, under this id.
    Held(Digest),
    /// It was held and has been evicted, once acknowledged; the catalog still records its id.
    Evicted,
    /// The store has never held it, or holds no record of it.
    Missing,
}
