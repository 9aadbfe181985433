//! `vedette.peers.service`: the peer transport. Conversions, GIL release and
//! error mapping only; every rule is in `crate::peers`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::errors;
use super::store::Store;
use crate::peers::frames::FrameLimits;
use crate::peers::retry::{Backoff, RetryPolicy};
use crate::peers::service::{self as core, PeerConfig};
use crate::peers::tls::TlsSettings;

pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PeerService>()?;
    module.add_class::<RetrySchedule>()?;
    module.add_function(wrap_pyfunction!(backoff_ceiling, module)?)?;
    Ok(())
}

/// The spacing of dials to one remote (`rust/peers/retry.rs`, INV-12), for the
/// Python parts that dial (the archive uplink): the same budget and backoff
/// the peer transport keeps, on the same monotonic clock.
#[pyclass(frozen, module = "vedette._core", name = "RetrySchedule")]
pub struct RetrySchedule(Mutex<Backoff>);

impl RetrySchedule {
    fn with<T>(&self, work: impl FnOnce(&mut Backoff) -> T) -> T {
        // A panic cannot leave a Backoff half-updated in a way that matters:
        // the worst is one dial spaced by a stale entry.
        work(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[pymethods]
impl RetrySchedule {
    #[new]
    fn new(base_s: f64, cap_s: f64, budget: u32, window_s: f64) -> PyResult<Self> {
        let policy = RetryPolicy {
            base: seconds("base_s", base_s)?,
            cap: seconds("cap_s", cap_s)?,
            budget: budget.max(1),
            window: seconds("window_s", window_s)?,
        };
        Ok(RetrySchedule(Mutex::new(Backoff::new(policy))))
    }

    /// Seconds to wait before the next dial may start (0: now).
    fn wait_s(&self) -> f64 {
        self.with(|backoff| backoff.wait(Instant::now()).as_secs_f64())
    }

    /// A dial starts now.
    fn attempt(&self) {
        self.with(|backoff| backoff.attempt(Instant::now()));
    }

    /// The dial, or the link it made, failed: the next waits a jittered,
    /// growing delay. Returns that delay in seconds.
    fn failed(&self) -> f64 {
        self.with(|backoff| backoff.failed(Instant::now()).as_secs_f64())
    }

    /// The link worked: backoff starts over (the budget does not).
    fn succeeded(&self) {
        self.with(Backoff::succeeded);
    }

    /// Dials started so far.
    #[getter]
    fn attempts(&self) -> u64 {
        self.with(|backoff| backoff.attempts())
    }

    /// Failures in a row since the last success.
    #[getter]
    fn failures(&self) -> u32 {
        self.with(|backoff| backoff.failures())
    }
}

/// The longest wait, in seconds, after `failures` failures in a row under a
/// full-jitter backoff from `base_s` capped at `cap_s` (`rust/peers/retry.rs`).
#[pyfunction]
fn backoff_ceiling(base_s: f64, cap_s: f64, failures: u32) -> PyResult<f64> {
    let policy = RetryPolicy {
        base: seconds("base_s", base_s)?,
        cap: seconds("cap_s", cap_s)?,
        ..RetryPolicy::default()
    };
    Ok(policy.ceiling(failures).as_secs_f64())
}

#[pyclass(frozen, module = "vedette._core", name = "PeerService")]
pub struct PeerService(core::PeerService);

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            errors::invalid_value(format!(
                "{name} must be a duration in seconds > 0, got {value}"
            ))
        })
}

fn parse_addr(text: &str) -> PyResult<SocketAddr> {
    text.parse().map_err(|_| {
        errors::invalid_value(format!(
            "expected an address as host:port with a literal IP, got {text:?}"
        ))
    })
}

#[pymethods]
impl PeerService {
    #[new]
    #[pyo3(signature = (store, *, ca, cert, key, crl, trust_domain = None, allow = Vec::new(),
                        rate_in = 8388608.0, burst_in = 1048576.0, rate_out = 8388608.0,
                        burst_out = 1048576.0, quota_margin = 0.5, quota_window_s = 5.0,
                        handshake_timeout_s = 10.0, idle_timeout_s = 60.0, sync_interval_s = 1.0,
                        max_connections = 64, max_pending_per_addr = 4, max_pending = 64,
                        max_dial_targets = 64, max_frame_bytes = 16793600, max_want_entries = 64,
                        retry_base_s = 0.5, retry_cap_s = 60.0, retry_budget = 10,
                        retry_window_s = 60.0, max_events = 1024, workers = 2))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        store: &Store,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        crl: Vec<PathBuf>,
        trust_domain: Option<String>,
        allow: Vec<String>,
        rate_in: f64,
        burst_in: f64,
        rate_out: f64,
        burst_out: f64,
        quota_margin: f64,
        quota_window_s: f64,
        handshake_timeout_s: f64,
        idle_timeout_s: f64,
        sync_interval_s: f64,
        max_connections: usize,
        max_pending_per_addr: usize,
        max_pending: usize,
        max_dial_targets: usize,
        max_frame_bytes: u32,
        max_want_entries: u16,
        retry_base_s: f64,
        retry_cap_s: f64,
        retry_budget: u32,
        retry_window_s: f64,
        max_events: usize,
        workers: usize,
    ) -> PyResult<PeerService> {
        let mut config = PeerConfig::new(TlsSettings {
            ca,
            cert,
            key,
            crl,
            trust_domain,
            allow,
        });
        config.limits = FrameLimits {
            max_frame_bytes,
            max_want_entries,
            ..FrameLimits::default()
        };
        config.rate_in = rate_in;
        config.burst_in = burst_in;
        config.rate_out = rate_out;
        config.burst_out = burst_out;
        config.quota_margin = quota_margin;
        config.quota_window = seconds("quota_window_s", quota_window_s)?;
        config.handshake_timeout = seconds("handshake_timeout_s", handshake_timeout_s)?;
        config.idle_timeout = seconds("idle_timeout_s", idle_timeout_s)?;
        config.sync_interval = seconds("sync_interval_s", sync_interval_s)?;
        config.max_connections = max_connections;
        config.max_pending_per_addr = max_pending_per_addr;
        config.max_pending = max_pending;
        config.max_dial_targets = max_dial_targets;
        config.retry = RetryPolicy {
            base: seconds("retry_base_s", retry_base_s)?,
            cap: seconds("retry_cap_s", retry_cap_s)?,
            budget: retry_budget,
            window: seconds("retry_window_s", retry_window_s)?,
        };
        config.max_events = max_events;
        config.workers = workers;
        config.validate()?;
        let store = std::sync::Arc::clone(&store.0);
        py.detach(|| core::PeerService::new(store, config))
            .map(PeerService)
            .map_err(PyErr::from)
    }

    /// Listens on `addr` ("host:port"); returns the address bound.
    fn listen(&self, py: Python<'_>, addr: &str) -> PyResult<String> {
        let addr = parse_addr(addr)?;
        py.detach(|| self.0.listen(addr))
            .map(|a| a.to_string())
            .map_err(PyErr::from)
    }

    fn dial(&self, py: Python<'_>, addr: &str) -> PyResult<()> {
        let addr = parse_addr(addr)?;
        py.detach(|| self.0.dial(addr)).map_err(PyErr::from)
    }

    /// Completes `count` full handshakes with `addr` in a row; returns how many.
    #[pyo3(signature = (addr, count = 1))]
    fn probe(&self, py: Python<'_>, addr: &str, count: u64) -> PyResult<u64> {
        let addr = parse_addr(addr)?;
        py.detach(|| self.0.probe(addr, count)).map_err(PyErr::from)
    }

    fn reload(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.0.reload()).map_err(PyErr::from)
    }

    #[pyo3(signature = (grace_s = 2.0))]
    fn stop(&self, py: Python<'_>, grace_s: f64) -> PyResult<()> {
        let grace = Duration::try_from_secs_f64(grace_s)
            .map_err(|_| errors::invalid_value(format!("grace_s must be >= 0, got {grace_s}")))?;
        py.detach(|| self.0.stop(grace));
        Ok(())
    }

    fn listening(&self) -> Vec<String> {
        self.0.listening().iter().map(ToString::to_string).collect()
    }

    #[pyo3(signature = (since = 0))]
    fn events<'py>(&self, py: Python<'py>, since: u64) -> PyResult<Bound<'py, PyList>> {
        let events = py.detach(|| self.0.events(since));
        let items = events
            .iter()
            .map(|e| {
                let d = PyDict::new(py);
                d.set_item("seq", e.seq)?;
                d.set_item("unix_ms", e.unix_ms)?;
                d.set_item("kind", &e.kind)?;
                d.set_item("peer", &e.peer)?;
                d.set_item("detail", &e.detail)?;
                Ok(d)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.0.status());
        let d = PyDict::new(py);
        d.set_item("running", s.running)?;
        d.set_item("listening", s.listening)?;
        let peers = PyList::empty(py);
        for p in &s.peers {
            let pd = PyDict::new(py);
            pd.set_item("identity", &p.identity)?;
            pd.set_item("node", &p.node)?;
            pd.set_item("address", &p.address)?;
            pd.set_item("outbound", p.outbound)?;
            pd.set_item("connected", p.connected)?;
            pd.set_item("since_unix_ms", p.since_unix_ms)?;
            pd.set_item("bytes_in", p.bytes_in)?;
            pd.set_item("bytes_out", p.bytes_out)?;
            pd.set_item("segments_in", p.segments_in)?;
            pd.set_item("segments_out", p.segments_out)?;
            pd.set_item("quota", p.quota)?;
            pd.set_item("last_sync_unix_ms", p.last_sync_unix_ms)?;
            pd.set_item("frontier_lag", p.frontier_lag)?;
            peers.append(pd)?;
        }
        d.set_item("peers", peers)?;
        let dials = PyList::empty(py);
        for t in &s.dials {
            let td = PyDict::new(py);
            td.set_item("address", &t.address)?;
            td.set_item("attempts", t.attempts)?;
            td.set_item("failures", t.failures)?;
            td.set_item("connected", t.connected)?;
            td.set_item("last_error", &t.last_error)?;
            dials.append(td)?;
        }
        d.set_item("dials", dials)?;
        d.set_item("handshakes_rejected", s.rejected.clone())?;
        d.set_item("bytes_in", s.bytes_in)?;
        d.set_item("bytes_out", s.bytes_out)?;
        d.set_item("segments_in", s.segments_in)?;
        d.set_item("segments_out", s.segments_out)?;
        d.set_item("handshakes_ok", s.handshakes_ok)?;
        d.set_item("quota_exceeded", s.quota_exceeded)?;
        d.set_item("origin_refused", s.origin_refused)?;
        d.set_item("connections", s.connections)?;
        d.set_item("in_flight", s.in_flight)?;
        d.set_item("tls_reloads", s.tls_reloads)?;
        d.set_item("tls_error", s.tls_error)?;
        Ok(d)
    }
}
