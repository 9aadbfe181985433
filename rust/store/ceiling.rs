//! INV-04: the disk ceiling. Usage is kept as running sums of what each file
//! occupies on disk (its length rounded up to whole blocks, as `du` counts),
//! and every write is admitted against the ceiling before it is made.

use std::collections::HashSet;
use std::sync::MutexGuard;

use super::catalog::{Catalog, Entry};
use super::commit::{SegmentMeta, Shared, State};
use super::error::{Result, StoreError};
use super::format::FOOTER_LEN;
use super::io::on_disk;
use crate::hashing::Digest;

/// Blocks kept free below the ceiling for data writes: room for the directory
/// to grow by a block and for the catalog entries that eviction itself writes.
const RESERVED_BLOCKS: u64 = 2;

impl Shared {
    /// Bytes the store occupies on disk, everything in its directory counted.
    pub(super) fn used(&self, st: &State) -> u64 {
        let open = st.open.as_ref().map_or(0, |open| {
            let assigned = open.written_len + st.pending.len() as u64 + FOOTER_LEN;
            on_disk(assigned.max(open.allocated), self.block)
        });
        st.other_bytes
            + st.quarantine_bytes
            + st.sealed_bytes
            + on_disk(st.catalog.len, self.block)
            + open
    }

    /// Bytes held by sealed segments that a peer or upstream has acknowledged.
    pub(super) fn evictable(&self, st: &State) -> u64 {
        st.segments
            .values()
            .filter(|meta| {
                st.catalog
                    .acks
                    .get(&meta.id)
                    .is_some_and(|by| !by.is_empty())
            })
            .map(|meta| on_disk(meta.size, self.block))
            .sum()
    }

    /// Acknowledged sealed segments, oldest first (creation time, then origin and sequence).
    fn eviction_order(&self, st: &State) -> Vec<SegmentMeta> {
        let mut candidates: Vec<SegmentMeta> = st
            .segments
            .values()
            .filter(|meta| {
                st.catalog
                    .acks
                    .get(&meta.id)
                    .is_some_and(|by| !by.is_empty())
            })
            .cloned()
            .collect();
        candidates.sort_by(|a, b| {
            (a.header.created_unix_ms, &a.header.origin, a.header.seq).cmp(&(
                b.header.created_unix_ms,
                &b.header.origin,
                b.header.seq,
            ))
        });
        candidates
    }

    /// Enforces INV-04: admits a write that adds `growth` bytes on disk, first
    /// evicting acknowledged sealed segments oldest-first if it would cross the
    /// ceiling. Evicts nothing and fails with `Full` if eviction cannot make room.
    /// `catalog_write` admits against the full ceiling (the reserve is for it).
    pub(super) fn ensure_room(
        &self,
        st: &mut MutexGuard<'_, State>,
        growth: u64,
        catalog_write: bool,
    ) -> Result<()> {
        let reserve = if catalog_write {
            0
        } else {
            RESERVED_BLOCKS * self.block
        };
        let limit = self.config.ceiling_bytes.saturating_sub(reserve);
        let used = self.used(st);
        if used + growth <= limit {
            return Ok(());
        }
        let evictable = self.evictable(st);
        let full = |used: u64| StoreError::Full {
            needed: growth,
            used,
            ceiling: self.config.ceiling_bytes,
            evictable,
            detail: None,
        };
        if catalog_write || used.saturating_sub(evictable) + growth > limit {
            return Err(full(used));
        }
        for victim in self.eviction_order(st) {
            if self.used(st) + growth <= limit {
                break;
            }
            self.evict(st, &victim)?;
        }
        let used = self.used(st);
        if used + growth <= limit {
            Ok(())
        } else {
            Err(full(used))
        }
    }

    /// Records the eviction durably in the catalog, then unlinks the segment
    /// and syncs the directory: after a crash the eviction is either not
    /// started or is finished at the next open.
    fn evict(&self, st: &mut MutexGuard<'_, State>, victim: &SegmentMeta) -> Result<()> {
        let entry = Entry::Evict {
            id: victim.id,
            origin: victim.header.origin.clone(),
            seq: victim.header.seq,
            next_record: victim.header.first_record + victim.record_count,
        };
        let growth = on_disk(st.catalog.len + Catalog::entry_len(&entry), self.block)
            - on_disk(st.catalog.len, self.block);
        if self.used(st) + growth > self.config.ceiling_bytes {
            return Err(StoreError::Full {
                needed: growth,
                used: self.used(st),
                ceiling: self.config.ceiling_bytes,
                evictable: self.evictable(st),
                detail: Some("no room left to record an eviction".into()),
            });
        }
        st.catalog.append(self.storage.as_ref(), entry)?;
        self.unlink_segment(st, &victim.id)?;
        self.compact_catalog(st);
        Ok(())
    }

    /// Removes a sealed segment's file and forgets it (its eviction already recorded).
    pub(super) fn unlink_segment(&self, st: &mut State, id: &Digest) -> Result<()> {
        let path = self.path(&format!("{}.seg", id.hex()));
        match self.storage.remove(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(StoreError::io("remove evicted segment", &path, err)),
        }
        let sig = self.path(&format!("{}.seg.sig", id.hex()));
        match self.storage.remove(&sig) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(StoreError::io("remove evicted signature", &sig, err)),
        }
        self.sync_dir(&self.dir)?;
        if let Some(meta) = st.segments.remove(id) {
            st.sealed_bytes = st
                .sealed_bytes
                .saturating_sub(on_disk(meta.size, self.block) + on_disk(meta.sig_len, self.block));
            st.by_origin.remove(&(meta.header.origin, meta.header.seq));
        }
        Ok(())
    }

    /// Keeps the catalog bounded by what the store holds (INV-04, INV-07):
    /// once it is mostly entries about segments long gone, it is rewritten
    /// with only the live ones. Skipped (the catalog stays valid) if there is
    /// no room for the rewrite or it fails.
    pub(super) fn compact_catalog(&self, st: &mut State) {
        if st.catalog.len < CATALOG_COMPACT_MIN_BYTES {
            return;
        }
        let held: HashSet<Digest> = st.segments.keys().copied().collect();
        let live = st.catalog.live_entries(&held);
        let live_len = Catalog::encoded_len(&live);
        if live_len * 2 > st.catalog.len {
            return;
        }
        // The new catalog exists next to the old one until the rename.
        if self.used(st) + on_disk(live_len, self.block) > self.config.ceiling_bytes {
            return;
        }
        let storage = std::sync::Arc::clone(&self.storage);
        let _ = st.catalog.rewrite(storage.as_ref(), live);
    }
}

/// The catalog is compacted only past this size, so small stores never bother.
const CATALOG_COMPACT_MIN_BYTES: u64 = 64 << 10;
