//! `vedette.hashing`: digests, hashers, file hashing, hash roles, canonical JSON.

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::buffer::{borrow_bytes, type_name, worth_detaching};
use super::errors;
use crate::hashing::{self as core, Algorithm, CanonicalJsonError, HashRole};

pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Digest>()?;
    module.add_class::<Hasher>()?;
    module.add_function(wrap_pyfunction!(self::blake3, module)?)?;
    module.add_function(wrap_pyfunction!(self::sha256, module)?)?;
    module.add_function(wrap_pyfunction!(hash_file, module)?)?;
    module.add_function(wrap_pyfunction!(require_role, module)?)?;
    module.add_function(wrap_pyfunction!(hash_roles, module)?)?;
    module.add_function(wrap_pyfunction!(canonical_json, module)?)?;
    module.add("MAX_FILE_HASH_THREADS", core::MAX_FILE_HASH_THREADS)?;
    Ok(())
}

fn parse_algorithm(name: &str) -> PyResult<Algorithm> {
    Algorithm::from_name(name).ok_or_else(|| {
        errors::invalid_value(format!(
            "unknown hash algorithm {}: expected 'blake3' or 'sha256'",
            core::quote(name)
        ))
    })
}

/// A digest and its algorithm; see `vedette.hashing.Digest`.
#[pyclass(frozen, module = "vedette.hashing", name = "Digest")]
pub struct Digest(pub core::Digest);

#[pymethods]
impl Digest {
    #[new]
    fn new(algorithm: &str, value: &Bound<'_, PyAny>) -> PyResult<Digest> {
        let algorithm = parse_algorithm(algorithm)?;
        let bytes = borrow_bytes(value)?;
        core::Digest::from_slice(algorithm, bytes.as_slice())
            .map(Digest)
            .map_err(PyErr::from)
    }

    #[staticmethod]
    fn parse(text: &Bound<'_, PyAny>) -> PyResult<Digest> {
        let text = text.cast::<PyString>().map_err(|_| {
            errors::wrong_type(format!(
                "Digest.parse() takes a str, got {}",
                type_name(text)
            ))
        })?;
        core::Digest::parse(text.to_str()?)
            .map(Digest)
            .map_err(PyErr::from)
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        self.0.algorithm().name()
    }

    /// The 32 digest bytes.
    #[getter]
    fn raw<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.as_bytes())
    }

    fn hex(&self) -> String {
        self.0.hex()
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        self.raw(py)
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Digest('{}')", self.0)
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<Digest>() else {
            return Ok(py.NotImplemented());
        };
        Ok(equality_only(py, self.0 == other.get().0, op))
    }

    fn __hash__(&self) -> u64 {
        // Keyed SipHash, so digests taken from untrusted input cannot be chosen
        // to collide in a dict.
        static KEYS: OnceLock<std::hash::RandomState> = OnceLock::new();
        KEYS.get_or_init(std::hash::RandomState::new)
            .hash_one(self.0)
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let parse = slf.get_type().getattr("parse")?;
        Ok((parse, (slf.get().0.to_string(),)))
    }
}

/// Incremental hashing; see `vedette.hashing.Hasher`.
#[pyclass(frozen, module = "vedette.hashing", name = "Hasher")]
pub struct Hasher {
    algorithm: Algorithm,
    // A lock rather than PyO3's borrow flag, so concurrent updates queue up
    // (as hashlib's do) instead of failing.
    state: Mutex<core::Hasher>,
}

impl Hasher {
    fn state(&self) -> std::sync::MutexGuard<'_, core::Hasher> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[pymethods]
impl Hasher {
    #[new]
    #[pyo3(signature = (algorithm = "blake3", data = None))]
    fn new(py: Python<'_>, algorithm: &str, data: Option<&Bound<'_, PyAny>>) -> PyResult<Hasher> {
        let algorithm = parse_algorithm(algorithm)?;
        let hasher = Hasher {
            algorithm,
            state: Mutex::new(core::Hasher::new(algorithm)),
        };
        if let Some(data) = data {
            hasher.update(py, data)?;
        }
        Ok(hasher)
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        self.algorithm.name()
    }

    fn update(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = borrow_bytes(data)?;
        let slice = bytes.as_slice();
        if !worth_detaching(slice.len()) {
            if let Ok(mut state) = self.state.try_lock() {
                state.update(slice);
                return Ok(());
            }
        }
        py.detach(|| self.state().update(slice));
        Ok(())
    }

    fn copy(&self) -> Hasher {
        Hasher {
            algorithm: self.algorithm,
            state: Mutex::new(self.state().clone()),
        }
    }

    fn digest(&self) -> Digest {
        Digest(self.state().digest())
    }

    fn __repr__(&self) -> String {
        format!("Hasher('{}')", self.algorithm)
    }
}

fn hash_buffer(
    data: &Bound<'_, PyAny>,
    hash: impl Fn(&[u8]) -> core::Digest + Send + Sync,
) -> PyResult<Digest> {
    let bytes = borrow_bytes(data)?;
    let slice = bytes.as_slice();
    let digest = if !worth_detaching(slice.len()) {
        hash(slice)
    } else {
        data.py().detach(|| hash(slice))
    };
    Ok(Digest(digest))
}

#[pyfunction]
fn blake3(data: &Bound<'_, PyAny>) -> PyResult<Digest> {
    hash_buffer(data, core::blake3)
}

#[pyfunction]
fn sha256(data: &Bound<'_, PyAny>) -> PyResult<Digest> {
    hash_buffer(data, core::sha256)
}

#[pyfunction]
#[pyo3(signature = (path, algorithm = "blake3", threads = None))]
fn hash_file(
    py: Python<'_>,
    path: PathBuf,
    algorithm: &str,
    threads: Option<usize>,
) -> PyResult<Digest> {
    let algorithm = parse_algorithm(algorithm)?;
    if threads == Some(0) {
        return Err(errors::invalid_value("threads must be >= 1 or None"));
    }
    py.detach(|| core::hash_file(&path, algorithm, threads))
        .map(Digest)
        .map_err(PyErr::from)
}

/// Returns the digest if its algorithm fits the role; raises `HashRoleError` if not.
#[pyfunction]
fn require_role<'py>(digest: &Bound<'py, PyAny>, role: &str) -> PyResult<Bound<'py, Digest>> {
    let role = HashRole::from_name(role).ok_or_else(|| {
        let names: Vec<&str> = HashRole::ALL.iter().map(|role| role.name()).collect();
        errors::invalid_value(format!(
            "unknown hash role {}: expected one of {}",
            core::quote(role),
            names.join(", ")
        ))
    })?;
    let digest = match digest.cast::<Digest>() {
        Ok(digest) => digest.clone(),
        Err(_) => Bound::new(digest.py(), Digest::parse(digest)?)?,
    };
    core::require_role(&digest.get().0, role)?;
    Ok(digest)
}

/// `{role: (algorithm, ...)}` for every hash role.
#[pyfunction]
fn hash_roles(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let roles = PyDict::new(py);
    for role in HashRole::ALL {
        let names: Vec<&str> = role.allowed().iter().map(|a| a.name()).collect();
        roles.set_item(role.name(), PyTuple::new(py, names)?)?;
    }
    Ok(roles)
}

/// RFC 8785 canonical JSON of a Python value built from dict (str keys),
/// list, tuple, str, int, float, bool and None.
#[pyfunction]
fn canonical_json<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::with_capacity(256);
    write_python(value, &mut out, 0)?;
    Ok(PyBytes::new(value.py(), &out))
}

fn write_python(value: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    use core::canonical::{
        compare_member_names, write_exact_integer, write_f64, write_string, MAX_DEPTH,
    };
    if depth > MAX_DEPTH {
        return Err(PyErr::from(CanonicalJsonError::TooDeep));
    }
    if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(flag) = value.cast::<PyBool>() {
        out.extend_from_slice(if flag.is_true() { b"true" } else { b"false" });
    } else if let Ok(integer) = value.cast::<PyInt>() {
        let written = match integer.extract::<i64>() {
            Ok(small) if small.unsigned_abs() <= 1 << 53 => write_f64(small as f64, out),
            _ => write_exact_integer(&integer.to_string(), out),
        };
        written?;
    } else if let Ok(float) = value.cast::<PyFloat>() {
        write_f64(float.value(), out)?;
    } else if let Ok(text) = value.cast::<PyString>() {
        write_string(&python_str(text)?, out);
    } else if let Ok(members) = value.cast::<PyDict>() {
        let mut sorted = Vec::with_capacity(members.len());
        for (name, item) in members.iter() {
            let name = name.cast::<PyString>().map_err(|_| {
                errors::canonical_json_message(format!(
                    "object member names must be str, got {}",
                    type_name(&name)
                ))
            })?;
            sorted.push((python_str(name)?, item));
        }
        sorted.sort_by(|a, b| compare_member_names(&a.0, &b.0));
        out.push(b'{');
        for (i, (name, item)) in sorted.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(name, out);
            out.push(b':');
            write_python(item, out, depth + 1)?;
        }
        out.push(b'}');
    } else if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        out.push(b'[');
        for (i, item) in value.try_iter()?.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_python(&item?, out, depth + 1)?;
        }
        out.push(b']');
    } else {
        return Err(errors::canonical_json_message(format!(
            "{} has no JSON form (use dict, list, tuple, str, int, float, bool or None)",
            type_name(value)
        )));
    }
    Ok(())
}

fn python_str(text: &Bound<'_, PyString>) -> PyResult<String> {
    // Lone surrogates have no UTF-8 form and so no canonical JSON form.
    text.to_str().map(str::to_owned).map_err(|_| {
        errors::canonical_json_message(format!(
            "string {} contains a lone surrogate, which has no UTF-8 form",
            text.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })
}

/// `==` and `!=` from `equal`; ordering comparisons are not defined.
pub(super) fn equality_only(py: Python<'_>, equal: bool, op: CompareOp) -> Py<PyAny> {
    match op {
        CompareOp::Eq => PyBool::new(py, equal).to_owned().into_any().unbind(),
        CompareOp::Ne => PyBool::new(py, !equal).to_owned().into_any().unbind(),
        _ => py.NotImplemented(),
    }
}
