//! The Python face of the core: `vedette._core`.
//!
//! Only type conversion, GIL release and error mapping live here; every rule
//! is in the plain Rust modules. Files mirror the Python modules they serve.

use pyo3::prelude::*;

mod buffer;
mod crypto;
mod errors;
mod gate;
mod hashing;
mod peers;
mod policy;
mod quota;
mod store;

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    hashing::register(module)?;
    policy::register(module)?;
    gate::register(module)?;
    quota::register(module)?;
    store::register(module)?;
    crypto::register(module)?;
    peers::register(module)?;
    Ok(())
}
