//! Quarantine reports: evidence recovery could not keep is moved aside, never
//! dropped, and each move leaves a report an operator must acknowledge.
//!
//! ```text
//! quarantine/<id>.json   the report (what, where, bytes, records lost, time)
//! quarantine/<id>.data   bytes cut from a segment (when the report names one)
//! quarantine/<name>      a whole file moved aside (a damaged sealed segment, …)
//! quarantine/<id>.ack    written by `vedette store quarantine ack ID`
//! ```
//!
//! Format and rules: docs/contracts.md, "Quarantine".

use std::path::{Path, PathBuf};

use super::commit::now_unix_ms;
use super::error::{Result, StoreError};
use super::io::Storage;

pub(super) const QUARANTINE_DIR: &str = "quarantine";

/// An operator's acknowledgement of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineAck {
    /// Who acknowledged it, as the operator gave it.
    pub by: String,
    /// When, in milliseconds since the Unix epoch (0 if the file does not say).
    pub unix_ms: u64,
}

/// One thing recovery (or a check) found and set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineReport {
    /// Stable name of the report; also the stem of its files.
    pub id: String,
    /// `cut-tail`, `segment`, `open-segment`, `catalog-tail`,
    /// `missing-segment`, `missing-open-segment` or `unreported-file`.
    pub kind: String,
    /// Why, in words.
    pub reason: String,
    /// The store file it came from (`open.seg`, `<id>.seg`, `catalog`).
    pub source: String,
    /// Where in `source` the cut bytes started, for a cut.
    pub offset: Option<u64>,
    /// Bytes set aside (or missing, when known).
    pub bytes: u64,
    /// Records lost, when known (for a cut: intact-looking frames after the damage).
    pub records_lost: Option<u64>,
    /// The file under `quarantine/` holding the bytes, if any.
    pub file: Option<String>,
    /// When the finding was made, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The operator's acknowledgement, once `quarantine/<id>.ack` exists; until every report has
    /// one, health is `damaged`.
    pub acknowledged: Option<QuarantineAck>,
}

impl QuarantineReport {
    /// A report of `kind` about `source`, of `bytes` bytes, made now; offset, records lost and file
    /// are filled in by the caller when known.
    pub fn new(id: String, kind: &str, source: &str, reason: String, bytes: u64) -> Self {
        QuarantineReport {
            id,
            kind: kind.to_string(),
            reason,
            source: source.to_string(),
            offset: None,
            bytes,
            records_lost: None,
            file: None,
            unix_ms: now_unix_ms(),
            acknowledged: None,
        }
    }

    /// The report as written to `quarantine/<id>.json` (the acknowledgement lives in its own file).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "id": self.id,
            "kind": self.kind,
            "reason": self.reason,
            "source": self.source,
            "offset": self.offset,
            "bytes": self.bytes,
            "records_lost": self.records_lost,
            "file": self.file,
            "unix_ms": self.unix_ms,
        })
        .to_string()
    }

    fn from_json(bytes: &[u8]) -> Option<QuarantineReport> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        Some(QuarantineReport {
            id: text("id")?,
            kind: text("kind")?,
            reason: text("reason").unwrap_or_default(),
            source: text("source").unwrap_or_default(),
            offset: num("offset"),
            bytes: num("bytes").unwrap_or(0),
            records_lost: num("records_lost"),
            file: text("file"),
            unix_ms: num("unix_ms").unwrap_or(0),
            acknowledged: None,
        })
    }
}

/// A report id is safe as a file name stem: `[A-Za-z0-9._-]`, 1 to 128 characters.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |err| StoreError::io(op, path, err)
}

pub(super) fn qdir(dir: &Path) -> PathBuf {
    dir.join(QUARANTINE_DIR)
}

/// Creates `quarantine/` (durably) if it is not there.
pub(super) fn ensure_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let q = qdir(dir);
    if storage.list(&q).is_err() {
        storage
            .create_dir(&q)
            .map_err(io_err("create quarantine", &q))?;
        storage
            .sync_dir(dir)
            .map_err(io_err("sync directory", dir))?;
    }
    Ok(())
}

/// Writes `data` to `quarantine/<name>` durably (temp file, sync, rename, sync).
pub(super) fn write_file(storage: &dyn Storage, dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    ensure_dir(storage, dir)?;
    let q = qdir(dir);
    let tmp = q.join(format!("{name}.tmp"));
    let target = q.join(name);
    let _ = storage.remove(&tmp);
    let written = storage.open_append(&tmp, true).and_then(|mut file| {
        file.append(data)?;
        file.sync_data()
    });
    written
        .and_then(|()| storage.rename(&tmp, &target))
        .and_then(|()| storage.sync_dir(&q))
        .map_err(|err| {
            let _ = storage.remove(&tmp);
            StoreError::io("write quarantine file", &target, err)
        })
}

/// Writes the report file for `report` (durably).
pub(super) fn write_report(
    storage: &dyn Storage,
    dir: &Path,
    report: &QuarantineReport,
) -> Result<()> {
    write_file(
        storage,
        dir,
        &format!("{}.json", report.id),
        report.to_json().as_bytes(),
    )
}

/// Every report in `quarantine/`, with acknowledgements, oldest first. Files
/// there that no report names (moved aside by an older version) are listed
/// as `unreported-file` reports of their own, so nothing goes unlisted.
pub(super) fn load(storage: &dyn Storage, dir: &Path) -> Vec<QuarantineReport> {
    let q = qdir(dir);
    let Ok(entries) = storage.list(&q) else {
        return Vec::new();
    };
    let names: std::collections::HashSet<String> = entries.iter().map(|e| e.name.clone()).collect();
    let mut reports = Vec::new();
    let mut named: std::collections::HashSet<String> = std::collections::HashSet::new();
    for entry in &entries {
        let Some(stem) = entry.name.strip_suffix(".json") else {
            continue;
        };
        let Ok(bytes) = storage.read(&q.join(&entry.name)) else {
            continue;
        };
        let Some(mut report) = QuarantineReport::from_json(&bytes) else {
            continue;
        };
        report.id = stem.to_string();
        named.insert(entry.name.clone());
        named.insert(format!("{stem}.ack"));
        if let Some(file) = &report.file {
            named.insert(file.clone());
        }
        reports.push(report);
    }
    for entry in &entries {
        let name = &entry.name;
        if named.contains(name) || name.ends_with(".tmp") || name.ends_with(".ack") {
            continue;
        }
        let id = format!("file-{name}");
        if !valid_id(&id) || names.contains(&format!("{id}.json")) {
            continue;
        }
        let mut report = QuarantineReport::new(
            id,
            "unreported-file",
            name,
            "a file in quarantine/ that no report describes".into(),
            entry.len,
        );
        report.file = Some(name.clone());
        report.unix_ms = 0;
        reports.push(report);
    }
    for report in &mut reports {
        report.acknowledged = read_ack(storage, dir, &report.id);
    }
    reports.sort_by(|a, b| (a.unix_ms, &a.id).cmp(&(b.unix_ms, &b.id)));
    reports
}

fn read_ack(storage: &dyn Storage, dir: &Path, id: &str) -> Option<QuarantineAck> {
    let bytes = storage.read(&qdir(dir).join(format!("{id}.ack"))).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Some(QuarantineAck {
        by: v
            .get("by")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string(),
        unix_ms: v
            .get("unix_ms")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
    })
}

/// Refreshes the acknowledgement of each report from disk (an operator may
/// acknowledge while the store is open).
pub(super) fn refresh_acks(storage: &dyn Storage, dir: &Path, reports: &mut [QuarantineReport]) {
    for report in reports.iter_mut().filter(|r| r.acknowledged.is_none()) {
        report.acknowledged = read_ack(storage, dir, &report.id);
    }
}

/// Records durably that `by` acknowledged report `id`. The evidence stays in
/// `quarantine/`; only an `<id>.ack` file is added. Safe beside a running
/// store: the store never writes `.ack` files.
pub(super) fn acknowledge(storage: &dyn Storage, dir: &Path, id: &str, by: &str) -> Result<()> {
    if !valid_id(id) {
        return Err(StoreError::Invalid(format!(
            "not a quarantine report id: {id:?}"
        )));
    }
    let text = serde_json::json!({"id": id, "by": by, "unix_ms": now_unix_ms()}).to_string();
    write_file(storage, dir, &format!("{id}.ack"), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_and_ids_are_file_safe() {
        let mut r = QuarantineReport::new("cut-a-1".into(), "cut-tail", "open.seg", "x".into(), 9);
        r.offset = Some(4);
        r.records_lost = Some(2);
        r.file = Some("cut-a-1.data".into());
        let back = QuarantineReport::from_json(r.to_json().as_bytes()).unwrap();
        assert_eq!(back, r);
        assert!(valid_id("missing-segment-abc_1.2"));
        for bad in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
