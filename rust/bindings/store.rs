//! `vedette.store`: the segment store. Conversions, GIL release and error mapping only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::buffer::borrow_bytes;
use super::errors;
use crate::hashing::Digest;
use crate::store::{self as core, queue, Durability, StoreConfig};

pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Store>()?;
    module.add_class::<DurableQueue>()?;
    module.add_function(wrap_pyfunction!(store_recorded_config, module)?)?;
    module.add_function(wrap_pyfunction!(shared_fs_name, module)?)?;
    module.add_function(wrap_pyfunction!(store_acknowledge_quarantine, module)?)?;
    module.add_function(wrap_pyfunction!(read_sealed_segment, module)?)?;
    Ok(())
}

fn parse_id(text: &str) -> PyResult<Digest> {
    Digest::parse(text).map_err(PyErr::from)
}

/// A sealed segment's bytes checked outside any store, with the checks of an
/// import (id, structure, every record checksum): its id and header, and its
/// `(record number, record)` pairs when `records`.
#[pyfunction]
#[pyo3(signature = (data, *, records = false))]
fn read_sealed_segment<'py>(
    py: Python<'py>,
    data: &Bound<'_, PyAny>,
    records: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let bytes = borrow_bytes(data)?;
    let slice = bytes.as_slice();
    let segment = py.detach(|| core::SealedSegment::read(slice))?;
    let out = PyDict::new(py);
    out.set_item("id", segment.id.to_string())?;
    out.set_item("origin", &segment.header.origin)?;
    out.set_item("seq", segment.header.seq)?;
    out.set_item("first_record", segment.header.first_record)?;
    out.set_item("created_unix_ms", segment.header.created_unix_ms)?;
    out.set_item("prev", segment.header.prev.map(|d| d.to_string()))?;
    out.set_item("record_count", segment.records.len())?;
    if records {
        let list = PyList::empty(py);
        for (number, record) in &segment.records {
            list.append((number, PyBytes::new(py, record)))?;
        }
        out.set_item("records", list)?;
    }
    Ok(out)
}

/// The node id and ceiling a store directory was last opened with.
#[pyfunction]
fn store_recorded_config(path: PathBuf) -> PyResult<(String, u64)> {
    core::Store::recorded_config(&path).map_err(PyErr::from)
}

/// The name of the shared (network) file system with statfs magic `f_type`, or None.
#[pyfunction]
fn shared_fs_name(f_type: i64) -> Option<&'static str> {
    core::shared_fs_name(f_type)
}

#[pyclass(frozen, module = "vedette._core", name = "Store")]
pub struct Store(pub(crate) Arc<core::Store>);

fn health_dict<'py>(py: Python<'py>, h: &core::StoreHealth) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("state", &h.state)?;
    d.set_item("verdict", &h.verdict)?;
    d.set_item("reason", &h.reason)?;
    d.set_item("usage_fraction", h.usage_fraction)?;
    d.set_item("high_water", h.high_water)?;
    d.set_item("bytes_used", h.bytes_used)?;
    d.set_item("ceiling_bytes", h.ceiling_bytes)?;
    d.set_item("unacked_sealed_bytes", h.unacked_sealed_bytes)?;
    d.set_item("sealed_segments", h.sealed_segments)?;
    d.set_item("acked_segments", h.acked_segments)?;
    d.set_item("oldest_unacked_age_s", h.oldest_unacked_age_s)?;
    d.set_item("quarantine_unacked", h.quarantine_unacked)?;
    Ok(d)
}

/// Records that `by` acknowledged quarantine report `report_id` of the store in `path`.
#[pyfunction]
fn store_acknowledge_quarantine(
    py: Python<'_>,
    path: PathBuf,
    report_id: String,
    by: String,
) -> PyResult<()> {
    py.detach(|| core::Store::acknowledge_quarantine_at(&path, &report_id, &by))
        .map_err(PyErr::from)
}

fn info_dict<'py>(py: Python<'py>, info: &core::SegmentInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", info.id.map(|id| id.to_string()))?;
    d.set_item("origin", &info.origin)?;
    d.set_item("seq", info.seq)?;
    d.set_item("size", info.size)?;
    d.set_item("sealed", info.sealed)?;
    d.set_item("first_record", info.first_record)?;
    d.set_item("records", info.records)?;
    d.set_item("created_unix_ms", info.created_unix_ms)?;
    d.set_item("prev", info.prev.map(|id| id.to_string()))?;
    d.set_item("acked_by", info.acked_by.clone())?;
    Ok(d)
}

#[pymethods]
impl Store {
    #[staticmethod]
    #[pyo3(signature = (path, ceiling_bytes, node_id, durability = "durable", sync_interval_s = 0.05,
                        segment_max_bytes = None, segment_max_age_s = None, max_record_bytes = None,
                        high_water = 0.8))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        ceiling_bytes: u64,
        node_id: String,
        durability: &str,
        sync_interval_s: f64,
        segment_max_bytes: Option<u64>,
        segment_max_age_s: Option<f64>,
        max_record_bytes: Option<u64>,
        high_water: f64,
    ) -> PyResult<Store> {
        let mut config = StoreConfig::new(ceiling_bytes, node_id);
        config.durability = match durability {
            "durable" => Durability::Durable,
            "interval" => Durability::Interval(seconds(sync_interval_s)?),
            other => {
                return Err(errors::invalid_value(format!(
                    "durability must be 'durable' or 'interval', got {other:?}"
                )))
            }
        };
        if let Some(bytes) = segment_max_bytes {
            config.segment_max_bytes = bytes;
        }
        config.segment_max_age = segment_max_age_s.map(seconds).transpose()?;
        if let Some(bytes) = max_record_bytes {
            config.max_record_bytes = bytes;
        }
        config.high_water = high_water;
        py.detach(|| core::Store::open(&path, config))
            .map(|store| Store(Arc::new(store)))
            .map_err(PyErr::from)
    }

    #[staticmethod]
    fn open_read_only(py: Python<'_>, path: PathBuf) -> PyResult<Store> {
        py.detach(|| core::Store::open_read_only(&path))
            .map(|store| Store(Arc::new(store)))
            .map_err(PyErr::from)
    }

    fn append(&self, py: Python<'_>, record: &Bound<'_, PyAny>) -> PyResult<u64> {
        let bytes = borrow_bytes(record)?;
        let slice = bytes.as_slice();
        let store = &self.0;
        py.detach(|| store.append(slice)).map_err(PyErr::from)
    }

    /// Returns the first position; the batch's positions are consecutive.
    fn append_many(&self, py: Python<'_>, records: &Bound<'_, PyAny>) -> PyResult<u64> {
        let items: Vec<Bound<'_, PyAny>> = records.try_iter()?.collect::<PyResult<_>>()?;
        let mut held = Vec::with_capacity(items.len());
        for item in &items {
            held.push(borrow_bytes(item)?);
        }
        let slices: Vec<&[u8]> = held.iter().map(|b| b.as_slice()).collect();
        let store = &self.0;
        py.detach(|| store.append_many(&slices))
            .map_err(PyErr::from)
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.0.flush()).map_err(PyErr::from)
    }

    fn seal(&self, py: Python<'_>) -> PyResult<Option<String>> {
        py.detach(|| self.0.seal())
            .map(|id| id.map(|id| id.to_string()))
            .map_err(PyErr::from)
    }

    fn ack(&self, py: Python<'_>, segment_id: &str, by: &str) -> PyResult<()> {
        let id = parse_id(segment_id)?;
        py.detach(|| self.0.ack(&id, by)).map_err(PyErr::from)
    }

    fn ack_all(&self, py: Python<'_>, segment_ids: Vec<String>, by: &str) -> PyResult<()> {
        let ids = segment_ids
            .iter()
            .map(|id| parse_id(id))
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| self.0.ack_all(&ids, by)).map_err(PyErr::from)
    }

    fn segments<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let infos = py.detach(|| self.0.segments());
        let items = infos
            .iter()
            .map(|i| info_dict(py, i))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// `(syncs, records, appends)`: durable commits since the open and what they carried.
    fn commit_stats(&self, py: Python<'_>) -> (u64, u64, u64) {
        let stats = py.detach(|| self.0.commit_stats());
        (stats.syncs, stats.records, stats.appends)
    }

    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let u = py.detach(|| self.0.usage());
        let d = PyDict::new(py);
        d.set_item("bytes_used", u.bytes_used)?;
        d.set_item("ceiling_bytes", u.ceiling_bytes)?;
        d.set_item("sealed_bytes", u.sealed_bytes)?;
        d.set_item("open_bytes", u.open_bytes)?;
        d.set_item("evictable_bytes", u.evictable_bytes)?;
        d.set_item("quarantine_bytes", u.quarantine_bytes)?;
        d.set_item("segments", u.segments)?;
        Ok(d)
    }

    fn chain_heads(&self, py: Python<'_>) -> Vec<(String, u64, String)> {
        py.detach(|| self.0.chain_heads())
            .into_iter()
            .map(|(origin, seq, id)| (origin, seq, id.to_string()))
            .collect()
    }

    fn get_segment<'py>(&self, py: Python<'py>, segment_id: &str) -> PyResult<Bound<'py, PyBytes>> {
        let id = parse_id(segment_id)?;
        let bytes = py.detach(|| self.0.get_segment(&id))?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[pyo3(signature = (data, expected_id = None))]
    fn import_segment(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        expected_id: Option<&str>,
    ) -> PyResult<String> {
        let expected = expected_id.map(parse_id).transpose()?;
        let bytes = borrow_bytes(data)?;
        let slice = bytes.as_slice();
        py.detach(|| self.0.import_segment(slice, expected.as_ref()))
            .map(|id| id.to_string())
            .map_err(PyErr::from)
    }

    #[pyo3(signature = (since = None, origin = None))]
    fn read_records<'py>(
        &self,
        py: Python<'py>,
        since: Option<u64>,
        origin: Option<&str>,
    ) -> PyResult<Vec<(u64, Bound<'py, PyBytes>)>> {
        let records = py.detach(|| self.0.read_records(origin, since))?;
        Ok(records
            .into_iter()
            .map(|(pos, bytes)| (pos, PyBytes::new(py, &bytes)))
            .collect())
    }

    #[pyo3(signature = (progress = None))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let report = py.detach(|| {
            self.0.verify(&mut |done, total| {
                if let Some(callback) = &progress {
                    // A failing progress callback must not stop the check.
                    Python::attach(|py| {
                        let _ = callback.call1(py, (done, total));
                    });
                }
            })
        });
        let d = PyDict::new(py);
        d.set_item("segments_checked", report.segments_checked)?;
        d.set_item("records_checked", report.records_checked)?;
        d.set_item("bytes_checked", report.bytes_checked)?;
        d.set_item("faults", report.faults)?;
        d.set_item("gaps", report.gaps)?;
        Ok(d)
    }

    fn recovery<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.0.recovery();
        let d = PyDict::new(py);
        d.set_item("truncated_bytes", r.truncated_bytes)?;
        d.set_item("truncated_records", r.truncated_records)?;
        d.set_item("catalog_truncated_bytes", r.catalog_truncated_bytes)?;
        d.set_item("quarantined", r.quarantined.clone())?;
        d.set_item("temp_files_removed", r.temp_files_removed.clone())?;
        d.set_item("evictions_completed", r.evictions_completed)?;
        d.set_item("sealed_on_open", r.sealed_on_open.map(|id| id.to_string()))?;
        d.set_item("unknown_files", r.unknown_files.clone())?;
        d.set_item("clean", r.is_clean())?;
        Ok(d)
    }

    fn put_origin_signature(
        &self,
        py: Python<'_>,
        segment_id: &str,
        blob: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = parse_id(segment_id)?;
        let bytes = borrow_bytes(blob)?;
        let slice = bytes.as_slice();
        py.detach(|| self.0.put_origin_signature(&id, slice))
            .map_err(PyErr::from)
    }

    fn origin_signature<'py>(
        &self,
        py: Python<'py>,
        segment_id: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let id = parse_id(segment_id)?;
        let blob = py.detach(|| self.0.origin_signature(&id))?;
        Ok(blob.map(|b| PyBytes::new(py, &b)))
    }

    fn reopen(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.0.reopen()).map_err(PyErr::from)
    }

    fn check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = py.detach(|| self.0.check());
        health_dict(py, &h)
    }

    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = py.detach(|| self.0.health());
        health_dict(py, &h)
    }

    /// `[(kind, detail, unix_ms), ...]`, cleared by the call.
    fn take_events(&self, py: Python<'_>) -> Vec<(String, String, u64)> {
        py.detach(|| self.0.take_events())
            .into_iter()
            .map(|e| (e.kind, e.detail, e.unix_ms))
            .collect()
    }

    fn quarantine<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let reports = py.detach(|| self.0.quarantine());
        let items = reports
            .iter()
            .map(|r| {
                let d = PyDict::new(py);
                d.set_item("id", &r.id)?;
                d.set_item("kind", &r.kind)?;
                d.set_item("reason", &r.reason)?;
                d.set_item("source", &r.source)?;
                d.set_item("offset", r.offset)?;
                d.set_item("bytes", r.bytes)?;
                d.set_item("records_lost", r.records_lost)?;
                d.set_item("file", &r.file)?;
                d.set_item("unix_ms", r.unix_ms)?;
                d.set_item(
                    "acknowledged_by",
                    r.acknowledged.as_ref().map(|a| a.by.clone()),
                )?;
                d.set_item(
                    "acknowledged_unix_ms",
                    r.acknowledged.as_ref().map(|a| a.unix_ms),
                )?;
                Ok(d)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    #[getter]
    fn node_id(&self) -> String {
        self.0.config().node_id.clone()
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.0.dir().to_path_buf()
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.0.close()).map_err(PyErr::from)
    }
}

/// Appends that return a ticket at once; finished tickets are reported through
/// `fileno()` (an eventfd an event loop watches) and `take_completed()`.
#[pyclass(frozen, module = "vedette._core", name = "DurableQueue")]
pub struct DurableQueue(queue::DurableQueue);

#[pymethods]
impl DurableQueue {
    #[new]
    fn new(store: &Store) -> PyResult<DurableQueue> {
        let sink: Arc<dyn queue::RecordSink> = store.0.clone();
        queue::DurableQueue::new(sink)
            .map(DurableQueue)
            .map_err(PyErr::from)
    }

    /// Queues a copy of `record`; returns its ticket. Never waits for the disk.
    fn submit(&self, record: &Bound<'_, PyAny>) -> PyResult<u64> {
        let bytes = borrow_bytes(record)?;
        self.0
            .submit(bytes.as_slice().to_vec())
            .map_err(PyErr::from)
    }

    /// Queues a copy of `record` to be written with the next batch (or
    /// within the lazy delay); returns its ticket.
    fn submit_lazy(&self, record: &Bound<'_, PyAny>) -> PyResult<u64> {
        let bytes = borrow_bytes(record)?;
        self.0
            .submit_lazy(bytes.as_slice().to_vec())
            .map_err(PyErr::from)
    }

    /// Has what is queued written now, lazy records included.
    fn commit(&self) {
        self.0.commit();
    }

    fn fileno(&self) -> i32 {
        self.0.ready_fd()
    }

    /// `[(first, last, error_or_None), ...]`: tickets `first..=last` are durable
    /// (error None) or failed with `error`.
    fn take_completed(&self, py: Python<'_>) -> Vec<(u64, u64, Option<Py<PyAny>>)> {
        self.0
            .take_completed()
            .into_iter()
            .map(|done| {
                let error = done
                    .result
                    .err()
                    .map(|err| PyErr::from(err).into_value(py).into_any());
                (done.first, done.last, error)
            })
            .collect()
    }

    /// Blocks until every record submitted before the call is written or failed.
    fn flush(&self, py: Python<'_>) {
        py.detach(|| self.0.flush())
    }

    /// Writes what is queued, then stops the writer thread.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.0.close())
    }
}

fn seconds(value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        errors::invalid_value(format!("expected a duration in seconds >= 0, got {value}"))
    })
}
