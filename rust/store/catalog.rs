//! The catalog: an append-only, checksummed journal of acknowledgements and
//! evictions, so both survive restarts and an eviction is durable before the
//! segment file is unlinked.
//!
//! ```text
//! entry   len u32 | crc32c u32 (over len | body) | body
//! body    1 u8 | segment id [32] | peer_len u8 | peer          (ack)
//!         2 u8 | segment id [32] | origin_len u8 | origin | seq u64 | next_record u64  (evict)
//!         3 u8 | segment id [32] | origin_len u8 | origin | seq u64 | next_record u64  (sealed)
//!         4 u8 | zeros [32]      | origin_len u8 | origin | seq u64 | first_record u64 (opened)
//! ```
//!
//! `sealed` and `opened` let a later open (and `vedette store verify`) tell a
//! segment deleted behind the store's back from one never written.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};
use super::format::{validate_origin, MAX_NUMBER};
use super::io::{AppendFile, Storage};
use crate::hashing::{Algorithm, Digest};

pub(super) const CATALOG_FILE: &str = "catalog";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Entry {
    Ack {
        id: Digest,
        by: String,
    },
    Evict {
        id: Digest,
        origin: String,
        seq: u64,
        /// Record number after the segment's last record (keeps numbering going once evicted).
        next_record: u64,
    },
    /// This store sealed (or imported) segment `id`.
    Sealed {
        id: Digest,
        origin: String,
        seq: u64,
        next_record: u64,
    },
    /// This store created its open segment `seq` (header durable).
    Opened {
        origin: String,
        seq: u64,
        first_record: u64,
    },
}

/// What an evicted segment was; kept so chains and record numbers stay known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Evicted {
    pub id: Digest,
    pub next_record: u64,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Entry::Ack { id, by } => {
                body.push(1);
                body.extend_from_slice(id.as_bytes());
                body.push(by.len() as u8);
                body.extend_from_slice(by.as_bytes());
            }
            Entry::Evict {
                id,
                origin,
                seq,
                next_record,
            }
            | Entry::Sealed {
                id,
                origin,
                seq,
                next_record,
            } => {
                body.push(if matches!(self, Entry::Evict { .. }) {
                    2
                } else {
                    3
                });
                body.extend_from_slice(id.as_bytes());
                body.push(origin.len() as u8);
                body.extend_from_slice(origin.as_bytes());
                body.extend_from_slice(&seq.to_le_bytes());
                body.extend_from_slice(&next_record.to_le_bytes());
            }
            Entry::Opened {
                origin,
                seq,
                first_record,
            } => {
                body.push(4);
                body.extend_from_slice(&[0; 32]);
                body.push(origin.len() as u8);
                body.extend_from_slice(origin.as_bytes());
                body.extend_from_slice(&seq.to_le_bytes());
                body.extend_from_slice(&first_record.to_le_bytes());
            }
        }
        let len = (body.len() as u32).to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &body);
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(body: &[u8]) -> Option<Entry> {
        let (&kind, rest) = body.split_first()?;
        let id = Digest::from_slice(Algorithm::Blake3, rest.get(..32)?).ok()?;
        let rest = &rest[32..];
        let (&name_len, rest) = rest.split_first()?;
        let name = std::str::from_utf8(rest.get(..usize::from(name_len))?)
            .ok()?
            .to_string();
        validate_origin(&name).ok()?;
        let rest = &rest[usize::from(name_len)..];
        match (kind, rest.len()) {
            (1, 0) => Some(Entry::Ack { id, by: name }),
            (2..=4, 16) => {
                let seq = u64::from_le_bytes(rest[..8].try_into().ok()?);
                let number = u64::from_le_bytes(rest[8..].try_into().ok()?);
                if seq > MAX_NUMBER || number > MAX_NUMBER {
                    return None;
                }
                Some(match kind {
                    2 => Entry::Evict {
                        id,
                        origin: name,
                        seq,
                        next_record: number,
                    },
                    3 => Entry::Sealed {
                        id,
                        origin: name,
                        seq,
                        next_record: number,
                    },
                    _ => Entry::Opened {
                        origin: name,
                        seq,
                        first_record: number,
                    },
                })
            }
            _ => None,
        }
    }
}

/// The catalog's state in memory and its open file.
pub(super) struct Catalog {
    path: PathBuf,
    file: Option<Box<dyn AppendFile>>,
    pub len: u64,
    pub acks: HashMap<Digest, BTreeSet<String>>,
    pub evicted: HashMap<(String, u64), Evicted>,
    /// Segments this store sealed or imported and has not evicted.
    pub sealed: HashMap<(String, u64), Evicted>,
    /// Per origin, the newest open segment created: (seq, first record).
    pub opened: HashMap<String, (u64, u64)>,
}

/// What loading the catalog found.
pub(super) struct Loaded {
    pub catalog: Catalog,
    /// A torn or corrupt tail, not yet cut off (`Catalog::cut_tail`).
    pub tail: Vec<u8>,
}

impl Catalog {
    pub(super) fn load(storage: &dyn Storage, dir: &Path) -> Result<Loaded> {
        let path = dir.join(CATALOG_FILE);
        let bytes = match storage.read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(StoreError::io("read catalog", &path, err)),
        };
        let mut catalog = Catalog {
            path,
            file: None,
            len: 0,
            acks: HashMap::new(),
            evicted: HashMap::new(),
            sealed: HashMap::new(),
            opened: HashMap::new(),
        };
        let mut at = 0usize;
        while bytes.len() - at >= 8 {
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                as usize;
            let crc =
                u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            let Some(body) = bytes.get(at + 8..at + 8 + len) else {
                break;
            };
            if crc32c::crc32c_append(crc32c::crc32c(&bytes[at..at + 4]), body) != crc {
                break;
            }
            let Some(entry) = Entry::decode(body) else {
                break;
            };
            catalog.apply(entry);
            at += 8 + len;
        }
        catalog.len = at as u64;
        Ok(Loaded {
            catalog,
            tail: bytes[at..].to_vec(),
        })
    }

    /// Cuts a damaged tail found by `load` (after it was quarantined).
    pub(super) fn cut_tail(&self, storage: &dyn Storage) -> Result<()> {
        storage
            .truncate(&self.path, self.len)
            .map_err(|err| StoreError::io("truncate catalog", &self.path, err))
    }

    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Ack { id, by } => {
                self.acks.entry(id).or_default().insert(by);
            }
            Entry::Evict {
                id,
                origin,
                seq,
                next_record,
            } => {
                self.acks.remove(&id);
                self.sealed.remove(&(origin.clone(), seq));
                self.evicted
                    .insert((origin, seq), Evicted { id, next_record });
            }
            Entry::Sealed {
                id,
                origin,
                seq,
                next_record,
            } => {
                if !self.evicted.contains_key(&(origin.clone(), seq)) {
                    self.sealed
                        .insert((origin, seq), Evicted { id, next_record });
                }
            }
            Entry::Opened {
                origin,
                seq,
                first_record,
            } => {
                let slot = self.opened.entry(origin).or_insert((seq, first_record));
                if seq >= slot.0 {
                    *slot = (seq, first_record);
                }
            }
        }
    }

    /// The size of `entry` once written, for the admission check.
    pub(super) fn entry_len(entry: &Entry) -> u64 {
        entry.encode().len() as u64
    }

    /// Appends `entry` and makes it durable before returning.
    pub(super) fn append(&mut self, storage: &dyn Storage, entry: Entry) -> Result<()> {
        self.append_all(storage, vec![entry])
    }

    /// Appends `entries` with one write and one sync: all of them are durable
    /// when it returns, or none is recorded.
    pub(super) fn append_all(&mut self, storage: &dyn Storage, entries: Vec<Entry>) -> Result<()> {
        let bytes: Vec<u8> = entries.iter().flat_map(Entry::encode).collect();
        if self.file.is_none() {
            let exists = self.len > 0 || storage.read(&self.path).is_ok();
            let file = storage
                .open_append(&self.path, !exists)
                .map_err(|err| StoreError::io("open catalog", &self.path, err))?;
            self.file = Some(file);
            if !exists {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                storage
                    .sync_dir(dir)
                    .map_err(|err| StoreError::io("sync directory", dir, err))?;
            }
        }
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::Failed("catalog file not open".into()));
        };
        let written = file.append(&bytes).and_then(|()| file.sync_data());
        if let Err(err) = written {
            // Undo a partial write so the catalog stays a clean sequence of entries.
            let undone = file.truncate(self.len).and_then(|()| file.sync_data());
            let err = StoreError::io("append to catalog", &self.path, err);
            return match undone {
                Ok(()) => Err(err),
                Err(undo) => Err(StoreError::Failed(format!(
                    "{err}; undoing it failed: {undo}"
                ))),
            };
        }
        self.len += bytes.len() as u64;
        for entry in entries {
            self.apply(entry);
        }
        Ok(())
    }

    pub(super) fn is_evicted(&self, id: &Digest) -> bool {
        self.evicted.values().any(|e| &e.id == id)
    }

    /// The entries that still matter: acknowledgements of segments still
    /// held, and per origin the newest eviction (which carries the chain head
    /// and the record numbering once all of an origin's segments are gone).
    pub(super) fn live_entries(&self, held: &HashSet<Digest>) -> Vec<Entry> {
        let mut newest: HashMap<&str, (u64, &Evicted)> = HashMap::new();
        for ((origin, seq), evicted) in &self.evicted {
            let slot = newest.entry(origin.as_str()).or_insert((*seq, evicted));
            if *seq >= slot.0 {
                *slot = (*seq, evicted);
            }
        }
        let mut entries: Vec<Entry> = newest
            .into_iter()
            .map(|(origin, (seq, evicted))| Entry::Evict {
                id: evicted.id,
                origin: origin.to_string(),
                seq,
                next_record: evicted.next_record,
            })
            .collect();
        for ((origin, seq), sealed) in &self.sealed {
            if held.contains(&sealed.id) {
                entries.push(Entry::Sealed {
                    id: sealed.id,
                    origin: origin.clone(),
                    seq: *seq,
                    next_record: sealed.next_record,
                });
            }
        }
        for (origin, (seq, first_record)) in &self.opened {
            entries.push(Entry::Opened {
                origin: origin.clone(),
                seq: *seq,
                first_record: *first_record,
            });
        }
        for (id, peers) in &self.acks {
            if held.contains(id) {
                entries.extend(peers.iter().map(|by| Entry::Ack {
                    id: *id,
                    by: by.clone(),
                }));
            }
        }
        entries
    }

    pub(super) fn encoded_len(entries: &[Entry]) -> u64 {
        entries.iter().map(Catalog::entry_len).sum()
    }

    /// Replaces the catalog with `entries` (from `live_entries`): written to a
    /// temp file, synced, renamed over the catalog, directory synced. A crash
    /// at any point leaves either the old or the new catalog, both complete.
    pub(super) fn rewrite(&mut self, storage: &dyn Storage, entries: Vec<Entry>) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let tmp = dir.join(format!("{CATALOG_FILE}.tmp"));
        let bytes: Vec<u8> = entries.iter().flat_map(Entry::encode).collect();
        let written = storage.open_append(&tmp, true).and_then(|mut file| {
            file.append(&bytes)?;
            file.sync_data()
        });
        let renamed = written
            .and_then(|()| storage.rename(&tmp, &self.path))
            .and_then(|()| storage.sync_dir(&dir));
        if let Err(err) = renamed {
            let _ = storage.remove(&tmp);
            return Err(StoreError::io("rewrite catalog", &tmp, err));
        }
        self.file = None;
        self.len = bytes.len() as u64;
        self.acks.clear();
        self.evicted.clear();
        self.sealed.clear();
        self.opened.clear();
        for entry in entries {
            self.apply(entry);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let id = Digest::new(Algorithm::Blake3, [3; 32]);
        for entry in [
            Entry::Ack {
                id,
                by: "peer-b".into(),
            },
            Entry::Evict {
                id,
                origin: "node-a".into(),
                seq: 7,
                next_record: 99,
            },
            Entry::Sealed {
                id,
                origin: "node-a".into(),
                seq: 8,
                next_record: 120,
            },
            Entry::Opened {
                origin: "node-a".into(),
                seq: 9,
                first_record: 120,
            },
        ] {
            let bytes = entry.encode();
            assert_eq!(Entry::decode(&bytes[8..]), Some(entry));
        }
    }
}
