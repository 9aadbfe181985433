//! Borrowing the bytes of any object that supports the buffer protocol,
//! without copying them.
//!
//! PyO3's `PyBuffer` is not available to abi3 wheels built for Python 3.10
//! (`PyObject_GetBuffer` joined the limited API in 3.11). The function and the
//! `Py_buffer` layout have been unchanged since Python 3.3 and every CPython
//! exports them, so this module declares the two calls it needs itself.

use std::ffi::{c_char, c_int, c_void};
use std::marker::PhantomData;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors;

/// CPython's `Py_buffer` (Include/pybuffer.h).
#[repr(C)]
struct RawBuffer {
    buf: *mut c_void,
    obj: *mut ffi::PyObject,
    len: ffi::Py_ssize_t,
    itemsize: ffi::Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut ffi::Py_ssize_t,
    strides: *mut ffi::Py_ssize_t,
    suboffsets: *mut ffi::Py_ssize_t,
    internal: *mut c_void,
}

/// `PyBUF_SIMPLE`: one C-contiguous run of bytes, or a `BufferError`.
const PYBUF_SIMPLE: c_int = 0;

extern "C" {
    fn PyObject_GetBuffer(obj: *mut ffi::PyObject, view: *mut RawBuffer, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut RawBuffer);
}

/// Inputs longer than this are read with the interpreter lock released: below
/// it, the work takes less than releasing and taking back the lock would. The
/// one threshold of every binding (and of the runtime's choice between
/// deciding on the event loop and on a worker thread).
pub(super) const DETACH_ABOVE_BYTES: usize = 4096;

/// Whether work on `len` input bytes is worth releasing the interpreter lock for.
pub(super) fn worth_detaching(len: usize) -> bool {
    len > DETACH_ABOVE_BYTES
}

/// The bytes of a Python object, borrowed for as long as this value lives.
/// The exporter (a `bytearray`, say) cannot resize while a view is held.
pub(super) enum Bytes<'py> {
    /// `bytes` is immutable: its storage can be read directly.
    Immutable(&'py [u8]),
    /// Anything else with the buffer protocol; released on drop.
    View(BufferView<'py>),
}

impl Bytes<'_> {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Immutable(bytes) => bytes,
            Bytes::View(view) => view.as_slice(),
        }
    }
}

/// An acquired `Py_buffer`. Not `Send`: it must be released with the GIL held,
/// so only its slice may travel into a GIL-free section.
pub(super) struct BufferView<'py> {
    raw: Box<RawBuffer>,
    _gil: PhantomData<Python<'py>>,
    _not_send: PhantomData<*const ()>,
}

impl BufferView<'_> {
    // Reads the exporter's memory through the raw pointer CPython handed out.
    #[allow(unsafe_code)]
    fn as_slice(&self) -> &[u8] {
        let len = usize::try_from(self.raw.len).unwrap_or(0);
        if self.raw.buf.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: PyBUF_SIMPLE guarantees `len` contiguous bytes at `buf`,
        // valid until PyBuffer_Release, which only Drop calls.
        unsafe { std::slice::from_raw_parts(self.raw.buf.cast::<u8>(), len) }
    }
}

impl Drop for BufferView<'_> {
    // A call into the CPython C API: the buffer must be released exactly once.
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and is
        // released exactly once; the 'py lifetime means the GIL is held.
        unsafe { PyBuffer_Release(&mut *self.raw) }
    }
}

/// Borrows the bytes of `object`: `bytes` directly, anything else through the
/// buffer protocol (`bytearray`, `memoryview`, `mmap`, numpy arrays, …).
pub(super) fn borrow_bytes<'a, 'py>(object: &'a Bound<'py, PyAny>) -> PyResult<Bytes<'a>> {
    if let Ok(bytes) = object.cast_exact::<PyBytes>() {
        return Ok(Bytes::Immutable(bytes.as_bytes()));
    }
    if object.is_instance_of::<pyo3::types::PyString>() {
        return Err(errors::wrong_type(
            "strings must be encoded before hashing (e.g. text.encode())",
        ));
    }
    let mut raw = Box::new(RawBuffer {
        buf: std::ptr::null_mut(),
        obj: std::ptr::null_mut(),
        len: 0,
        itemsize: 0,
        readonly: 0,
        ndim: 0,
        format: std::ptr::null_mut(),
        shape: std::ptr::null_mut(),
        strides: std::ptr::null_mut(),
        suboffsets: std::ptr::null_mut(),
        internal: std::ptr::null_mut(),
    });
    // A call into the CPython C API (PyO3 has no safe buffer borrow for any exporter).
    // SAFETY: `object` is a live reference and the GIL is held; `raw` is a
    // writable Py_buffer. On failure nothing is acquired and an exception is set.
    #[allow(unsafe_code)]
    let status = unsafe { PyObject_GetBuffer(object.as_ptr(), &mut *raw, PYBUF_SIMPLE) };
    if status != 0 {
        let err = PyErr::take(object.py())
            .unwrap_or_else(|| errors::wrong_type("object does not support the buffer protocol"));
        return Err(errors::wrong_type(format!(
            "expected a bytes-like object, got {}: {err}",
            type_name(object)
        )));
    }
    Ok(Bytes::View(BufferView {
        raw,
        _gil: PhantomData,
        _not_send: PhantomData,
    }))
}

pub(super) fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "object".to_string())
}
