//! Maps core errors to the Python exceptions of `vedette.errors`, in one place.
//!
//! The exception classes are defined in Python (so they can also subclass
//! `ValueError` and friends) and imported here the first time one is raised.
//! Every core error type converts with `From`, so `?` works in the bindings;
//! the few errors that are only a message have a function here. No other
//! binding module builds an exception itself (`tests/test_house_rules.py`).

use std::io;
use std::path::Path;

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::PyErr;

use crate::crypto::origin::OriginSignatureError;
use crate::crypto::{KeyFileError, PkiError, SignatureError};
use crate::gate::InvalidIntent;
use crate::hashing::{CanonicalJsonError, DigestParseError, FileHashError, HashRoleError};
use crate::peers::PeerError;
use crate::policy::{BundleError, ManifestError};
use crate::quota::QuotaError;
use crate::store::StoreError;

/// The exception classes of `vedette.errors`, under their Python names.
mod py {
    pyo3::import_exception!(vedette.errors, DigestFormatError);
    pyo3::import_exception!(vedette.errors, HashRoleError);
    pyo3::import_exception!(vedette.errors, CanonicalJsonError);
    pyo3::import_exception!(vedette.errors, QuotaError);
    pyo3::import_exception!(vedette.errors, StoreError);
    pyo3::import_exception!(vedette.errors, StoreFullError);
    pyo3::import_exception!(vedette.errors, StoreLockedError);
    pyo3::import_exception!(vedette.errors, StoreRefusedError);
    pyo3::import_exception!(vedette.errors, StoreCorruptError);
    pyo3::import_exception!(vedette.errors, SegmentNotFoundError);
    pyo3::import_exception!(vedette.errors, BundleError);
    pyo3::import_exception!(vedette.errors, ManifestError);
    pyo3::import_exception!(vedette.errors, SignatureError);
    pyo3::import_exception!(vedette.errors, KeyFileError);
    pyo3::import_exception!(vedette.errors, PkiError);
    pyo3::import_exception!(vedette.errors, OriginSignatureError);
    pyo3::import_exception!(vedette.errors, PeerError);
    pyo3::import_exception!(vedette.errors, InvalidIntent);
}

impl From<DigestParseError> for PyErr {
    fn from(err: DigestParseError) -> PyErr {
        py::DigestFormatError::new_err(err.to_string())
    }
}

impl From<HashRoleError> for PyErr {
    fn from(err: HashRoleError) -> PyErr {
        py::HashRoleError::new_err((
            err.to_string(),
            err.role.name(),
            err.expected(),
            err.given.name(),
        ))
    }
}

impl From<CanonicalJsonError> for PyErr {
    fn from(err: CanonicalJsonError) -> PyErr {
        py::CanonicalJsonError::new_err(err.to_string())
    }
}

pub(super) fn canonical_json_message(message: String) -> PyErr {
    py::CanonicalJsonError::new_err(message)
}

impl From<QuotaError> for PyErr {
    fn from(err: QuotaError) -> PyErr {
        py::QuotaError::new_err(err.to_string())
    }
}

impl From<FileHashError> for PyErr {
    fn from(err: FileHashError) -> PyErr {
        os_error_at(&err.source, &err.path)
    }
}

/// An `OSError` of the right subclass (`FileNotFoundError`, …) with the filename set.
pub(super) fn os_error_at(source: &io::Error, path: &Path) -> PyErr {
    let message = source.to_string();
    // io::Error appends " (os error N)" to strerror; Python shows the errno itself.
    let message = match message.rfind(" (os error ") {
        Some(at) => message[..at].to_string(),
        None => message,
    };
    let path = path.to_string_lossy().into_owned();
    match source.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, message, path)),
        None => PyOSError::new_err(format!("{path}: {message}")),
    }
}

/// An I/O failure with no one file to name: a plain `OSError`.
pub(super) fn os_error(message: impl std::fmt::Display) -> PyErr {
    PyOSError::new_err(message.to_string())
}

/// An argument of the right type with a value the function does not accept: `ValueError`.
pub(super) fn invalid_value(message: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(message.to_string())
}

/// An argument of a type the function does not take: `TypeError`.
pub(super) fn wrong_type(message: impl std::fmt::Display) -> PyErr {
    PyTypeError::new_err(message.to_string())
}

/// Segment store errors; `StoreFullError` carries the numbers as attributes.
impl From<StoreError> for PyErr {
    fn from(err: StoreError) -> PyErr {
        let message = err.to_string();
        match err {
            StoreError::Full {
                needed,
                used,
                ceiling,
                evictable,
                ..
            } => py::StoreFullError::new_err((message, needed, used, ceiling, evictable)),
            StoreError::Locked { .. } => py::StoreLockedError::new_err(message),
            StoreError::Refused { check, .. } => py::StoreRefusedError::new_err((message, check)),
            StoreError::Corrupt(_) => py::StoreCorruptError::new_err(message),
            StoreError::NotFound(_) => py::SegmentNotFoundError::new_err(message),
            StoreError::Invalid(_) => PyValueError::new_err(message),
            _ => py::StoreError::new_err(message),
        }
    }
}

/// `BundleError(message, file, rule)`: the file inside the bundle and the rule broken.
impl From<BundleError> for PyErr {
    fn from(err: BundleError) -> PyErr {
        py::BundleError::new_err((err.to_string(), err.file.clone(), err.rule.name()))
    }
}

/// `ManifestError(message, at)`: `at` is the JSON path of the offending value.
impl From<ManifestError> for PyErr {
    fn from(err: ManifestError) -> PyErr {
        py::ManifestError::new_err((err.to_string(), err.at.clone()))
    }
}

impl From<SignatureError> for PyErr {
    fn from(err: SignatureError) -> PyErr {
        py::SignatureError::new_err(err.to_string())
    }
}

impl From<OriginSignatureError> for PyErr {
    fn from(err: OriginSignatureError) -> PyErr {
        py::OriginSignatureError::new_err(err.to_string())
    }
}

impl From<KeyFileError> for PyErr {
    fn from(err: KeyFileError) -> PyErr {
        py::KeyFileError::new_err(err.to_string())
    }
}

impl From<PkiError> for PyErr {
    fn from(err: PkiError) -> PyErr {
        py::PkiError::new_err(err.to_string())
    }
}

/// A certificate, key or CRL file that cannot be read or used.
pub(super) fn pki_message(message: String) -> PyErr {
    py::PkiError::new_err(message)
}

impl From<PeerError> for PyErr {
    fn from(err: PeerError) -> PyErr {
        match err {
            PeerError::Settings(message) => PyValueError::new_err(message),
            // A certificate, key or CRL file that cannot be read or used.
            PeerError::Files(message) => py::PkiError::new_err(message),
            PeerError::Network(message)
            | PeerError::Busy(message)
            | PeerError::Stopped(message) => py::PeerError::new_err(message),
        }
    }
}

impl From<InvalidIntent> for PyErr {
    fn from(err: InvalidIntent) -> PyErr {
        py::InvalidIntent::new_err(err.0)
    }
}
