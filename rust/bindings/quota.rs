//! `vedette.quota`: token buckets and the keyed quota table.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::quota::{self as core, Clock};

use super::errors;

pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<ManualClock>()?;
    module.add_class::<TokenBucket>()?;
    module.add_class::<QuotaTable>()?;
    Ok(())
}

const NANOS_PER_SECOND: f64 = 1e9;

fn seconds_to_ns(seconds: f64) -> PyResult<u64> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(errors::invalid_value(format!(
            "seconds must be a finite number >= 0, got {seconds}"
        )));
    }
    Ok((seconds * NANOS_PER_SECOND).round() as u64)
}

fn clock_of(clock: Option<&ManualClock>) -> Clock {
    clock.map_or(Clock::Monotonic, |manual| {
        Clock::Manual(Arc::clone(&manual.0))
    })
}

/// A clock for tests: moves only when `advance` is called.
#[pyclass(frozen, module = "vedette.quota", name = "ManualClock")]
pub struct ManualClock(Arc<core::ManualClock>);

#[pymethods]
impl ManualClock {
    #[new]
    #[pyo3(signature = (start = 0.0))]
    fn new(start: f64) -> PyResult<ManualClock> {
        Ok(ManualClock(Arc::new(core::ManualClock::new(
            seconds_to_ns(start)?,
        ))))
    }

    fn advance(&self, seconds: f64) -> PyResult<()> {
        self.0.advance_ns(seconds_to_ns(seconds)?);
        Ok(())
    }

    #[getter]
    fn now(&self) -> f64 {
        self.0.now_ns() as f64 / NANOS_PER_SECOND
    }
}

#[pyclass(frozen, module = "vedette.quota", name = "TokenBucket")]
pub struct TokenBucket(core::TokenBucket);

#[pymethods]
impl TokenBucket {
    #[new]
    #[pyo3(signature = (rate_per_s, burst, *, clock = None))]
    fn new(rate_per_s: f64, burst: f64, clock: Option<PyRef<'_, ManualClock>>) -> PyResult<Self> {
        core::TokenBucket::new(rate_per_s, burst, clock_of(clock.as_deref()))
            .map(TokenBucket)
            .map_err(PyErr::from)
    }

    #[pyo3(signature = (n = 1.0))]
    fn try_take(&self, n: f64) -> PyResult<bool> {
        self.0.try_take(n).map_err(PyErr::from)
    }

    #[pyo3(signature = (n = 1.0))]
    fn wait_time(&self, n: f64) -> PyResult<f64> {
        self.0.wait_time(n).map_err(PyErr::from)
    }

    #[getter]
    fn available(&self) -> f64 {
        self.0.available()
    }

    #[getter]
    fn rate_per_s(&self) -> f64 {
        self.0.rate_per_s()
    }

    #[getter]
    fn burst(&self) -> f64 {
        self.0.burst()
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenBucket(rate_per_s={}, burst={}, available={:.3})",
            self.0.rate_per_s(),
            self.0.burst(),
            self.0.available()
        )
    }
}

#[pyclass(frozen, module = "vedette.quota", name = "QuotaTable")]
pub struct QuotaTable(pub(super) Arc<core::QuotaTable>);

#[pymethods]
impl QuotaTable {
    #[new]
    #[pyo3(signature = (rate_per_s, burst, max_keys, *, clock = None))]
    fn new(
        rate_per_s: f64,
        burst: f64,
        max_keys: usize,
        clock: Option<PyRef<'_, ManualClock>>,
    ) -> PyResult<Self> {
        core::QuotaTable::new(rate_per_s, burst, max_keys, clock_of(clock.as_deref()))
            .map(|table| QuotaTable(Arc::new(table)))
            .map_err(PyErr::from)
    }

    #[pyo3(signature = (key, n = 1.0))]
    fn try_take(&self, key: &str, n: f64) -> PyResult<bool> {
        self.0.try_take(key, n).map_err(PyErr::from)
    }

    #[pyo3(signature = (key, n = 1.0))]
    fn wait_time(&self, key: &str, n: f64) -> PyResult<f64> {
        self.0.wait_time(key, n).map_err(PyErr::from)
    }

    fn available(&self, key: &str) -> PyResult<f64> {
        self.0.available(key).map_err(PyErr::from)
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }

    #[getter]
    fn max_keys(&self) -> usize {
        self.0.max_keys()
    }

    #[getter]
    fn evictions(&self) -> u64 {
        self.0.evictions()
    }

    #[getter]
    fn rate_per_s(&self) -> f64 {
        self.0.rate_per_s()
    }

    #[getter]
    fn burst(&self) -> f64 {
        self.0.burst()
    }
}
