//! `vedette.policy`: bundles, the policy engine, decisions, agent manifests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::buffer::{borrow_bytes, type_name, worth_detaching};
use super::errors;
use super::hashing::Digest;
use crate::policy::{self as core, EngineReuse, Fault, Value};

/// Inputs nested deeper than this are refused (denied): the canonical-JSON limit.
const MAX_INPUT_DEPTH: usize = crate::hashing::canonical_json::MAX_DEPTH;

pub(super) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<BundleLimits>()?;
    module.add_class::<Bundle>()?;
    module.add_class::<PolicyEngine>()?;
    module.add_class::<Decision>()?;
    module.add_class::<AgentManifest>()?;
    module.add_class::<ArgsValidator>()?;
    module.add("POLICY_ENTRY_POINT", core::ENTRY_POINT)?;
    module.add("AGENT_SCHEMA", core::AGENT_SCHEMA)?;
    Ok(())
}

/// Bounds on a bundle; see `vedette.policy.BundleLimits`.
#[pyclass(frozen, module = "vedette.policy", name = "BundleLimits")]
#[derive(Clone, Copy)]
pub struct BundleLimits(core::BundleLimits);

#[pymethods]
impl BundleLimits {
    #[new]
    #[pyo3(signature = (
        *,
        max_compressed_bytes = None,
        max_decompressed_bytes = None,
        max_entries = None,
        max_file_bytes = None,
        max_path_bytes = None,
        max_path_depth = None,
    ))]
    fn new(
        max_compressed_bytes: Option<u64>,
        max_decompressed_bytes: Option<u64>,
        max_entries: Option<usize>,
        max_file_bytes: Option<u64>,
        max_path_bytes: Option<usize>,
        max_path_depth: Option<usize>,
    ) -> BundleLimits {
        let defaults = core::BundleLimits::default();
        BundleLimits(core::BundleLimits {
            max_compressed_bytes: max_compressed_bytes.unwrap_or(defaults.max_compressed_bytes),
            max_decompressed_bytes: max_decompressed_bytes
                .unwrap_or(defaults.max_decompressed_bytes),
            max_entries: max_entries.unwrap_or(defaults.max_entries),
            max_file_bytes: max_file_bytes.unwrap_or(defaults.max_file_bytes),
            max_path_bytes: max_path_bytes.unwrap_or(defaults.max_path_bytes),
            max_path_depth: max_path_depth.unwrap_or(defaults.max_path_depth),
        })
    }

    #[getter]
    fn max_compressed_bytes(&self) -> u64 {
        self.0.max_compressed_bytes
    }
    #[getter]
    fn max_decompressed_bytes(&self) -> u64 {
        self.0.max_decompressed_bytes
    }
    #[getter]
    fn max_entries(&self) -> usize {
        self.0.max_entries
    }
    #[getter]
    fn max_file_bytes(&self) -> u64 {
        self.0.max_file_bytes
    }
    #[getter]
    fn max_path_bytes(&self) -> usize {
        self.0.max_path_bytes
    }
    #[getter]
    fn max_path_depth(&self) -> usize {
        self.0.max_path_depth
    }

    fn __repr__(&self) -> String {
        let l = &self.0;
        format!(
            "BundleLimits(max_compressed_bytes={}, max_decompressed_bytes={}, max_entries={}, \
             max_file_bytes={}, max_path_bytes={}, max_path_depth={})",
            l.max_compressed_bytes,
            l.max_decompressed_bytes,
            l.max_entries,
            l.max_file_bytes,
            l.max_path_bytes,
            l.max_path_depth
        )
    }
}

fn limits_of(limits: Option<&BundleLimits>) -> core::BundleLimits {
    limits.map_or_else(core::BundleLimits::default, |limits| limits.0)
}

/// A bundle read and checked; see `vedette.policy.Bundle`.
#[pyclass(frozen, module = "vedette.policy", name = "Bundle")]
pub struct Bundle(Arc<core::Bundle>);

#[pymethods]
impl Bundle {
    /// Reads a bundle from a directory or a `.tar.gz` file.
    #[staticmethod]
    #[pyo3(signature = (path, limits = None))]
    fn load(py: Python<'_>, path: PathBuf, limits: Option<&BundleLimits>) -> PyResult<Bundle> {
        let limits = limits_of(limits);
        if let Err(err) = std::fs::metadata(&path) {
            return Err(errors::os_error_at(&err, &path));
        }
        py.detach(|| core::Bundle::from_path(&path, &limits))
            .map(|bundle| Bundle(Arc::new(bundle)))
            .map_err(PyErr::from)
    }

    /// Reads a bundle from the bytes of a `.tar.gz`.
    #[staticmethod]
    #[pyo3(signature = (data, limits = None))]
    fn from_bytes(data: &Bound<'_, PyAny>, limits: Option<&BundleLimits>) -> PyResult<Bundle> {
        let limits = limits_of(limits);
        let bytes = borrow_bytes(data)?;
        let slice = bytes.as_slice();
        data.py()
            .detach(|| core::Bundle::from_tar_gz(slice, &limits))
            .map(|bundle| Bundle(Arc::new(bundle)))
            .map_err(PyErr::from)
    }

    #[getter]
    fn policy_hash(&self) -> Digest {
        Digest(self.0.policy_hash())
    }

    #[getter]
    fn revision(&self) -> String {
        self.0.manifest().revision.clone()
    }

    #[getter]
    fn roots(&self) -> Vec<String> {
        self.0.manifest().roots.clone()
    }

    #[getter]
    fn rego_version(&self) -> u8 {
        self.0.manifest().rego_version.number()
    }

    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_python(
            py,
            &serde_json::Value::Object(self.0.manifest().metadata.clone()),
        )
    }

    /// The paths of the bundle's files, in byte order.
    #[getter]
    fn files(&self) -> Vec<String> {
        self.0.files().keys().cloned().collect()
    }

    /// The listing the policy hash is computed over.
    fn canonical_listing(&self) -> PyResult<String> {
        core::canonical_listing(self.0.files()).map_err(PyErr::from)
    }

    /// The reproducible `.tar.gz` bytes of this bundle.
    fn to_tar_gz<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bundle = Arc::clone(&self.0);
        let packed = py
            .detach(move || bundle.to_tar_gz())
            .map_err(errors::os_error)?;
        Ok(PyBytes::new(py, &packed))
    }

    fn __repr__(&self) -> String {
        format!(
            "Bundle(revision={:?}, policy_hash='{}', files={})",
            self.0.manifest().revision,
            self.0.policy_hash(),
            self.0.files().len()
        )
    }
}

/// A compiled, warmed bundle; see `vedette.policy.PolicyEngine`.
#[pyclass(frozen, module = "vedette.policy", name = "PolicyEngine")]
pub struct PolicyEngine(pub(super) Arc<core::PolicyEngine>);

#[pymethods]
impl PolicyEngine {
    #[new]
    #[pyo3(signature = (bundle, *, time_limit = 0.1, reuse = "pool"))]
    fn new(py: Python<'_>, bundle: &Bundle, time_limit: f64, reuse: &str) -> PyResult<Self> {
        let limits = core::EvalLimits::from_seconds(time_limit).map_err(errors::invalid_value)?;
        let reuse: EngineReuse = reuse.parse().map_err(errors::invalid_value)?;
        let bundle = Arc::clone(&bundle.0);
        py.detach(move || core::PolicyEngine::new(&bundle, limits))
            .map(|engine| PolicyEngine(Arc::new(engine.with_reuse(reuse))))
            .map_err(PyErr::from)
    }

    /// Evaluates `data.vedette.decision` for `input`. Never raises: an input
    /// with no JSON form is denied like any other fault.
    fn evaluate(&self, py: Python<'_>, input: &Bound<'_, PyAny>) -> Decision {
        let decision = match python_to_value(input, 0) {
            Ok(value) => py.detach(|| self.0.evaluate(value)),
            Err(problem) => {
                core::Decision::refused_input(format!("input has no JSON form: {problem}"))
            }
        };
        Decision(decision)
    }

    /// Evaluates an input given as JSON text (str or bytes).
    fn evaluate_json(&self, py: Python<'_>, input: &Bound<'_, PyAny>) -> PyResult<Decision> {
        let text = if let Ok(text) = input.cast::<PyString>() {
            text.to_str()?.to_owned()
        } else {
            let bytes = borrow_bytes(input)?;
            match std::str::from_utf8(bytes.as_slice()) {
                Ok(text) => text.to_owned(),
                Err(_) => {
                    return Ok(Decision(core::Decision::refused_input(
                        "input is not valid UTF-8",
                    )))
                }
            }
        };
        Ok(Decision(py.detach(|| self.0.evaluate_json(&text))))
    }

    #[getter]
    fn policy_hash(&self) -> Digest {
        Digest(self.0.policy_hash())
    }

    #[getter]
    fn revision(&self) -> String {
        self.0.revision().to_string()
    }

    /// Seconds one evaluation may take.
    #[getter]
    fn time_limit(&self) -> f64 {
        self.0.limits().time_limit.as_secs_f64()
    }

    fn __repr__(&self) -> String {
        format!(
            "PolicyEngine(revision={:?}, policy_hash='{}')",
            self.0.revision(),
            self.0.policy_hash()
        )
    }
}

/// The outcome of one evaluation; see `vedette.policy.Decision`.
#[pyclass(frozen, module = "vedette.policy", name = "Decision")]
pub struct Decision(core::Decision);

#[pymethods]
impl Decision {
    #[getter]
    fn allow(&self) -> bool {
        self.0.allow
    }

    #[getter]
    fn reason(&self) -> &str {
        &self.0.reason
    }

    /// Why the engine denied on its own account, or None when the policy decided.
    #[getter]
    fn fault(&self) -> Option<&'static str> {
        self.0.fault.map(Fault::name)
    }

    /// The decision object as the policy produced it, or None.
    #[getter]
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_python(py, &self.0.result)
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("allow", self.0.allow)?;
        dict.set_item("reason", &self.0.reason)?;
        dict.set_item("fault", self.fault())?;
        dict.set_item("result", self.result(py)?)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        match self.0.fault {
            Some(fault) => format!(
                "Decision(allow={}, reason={:?}, fault='{}')",
                if self.0.allow { "True" } else { "False" },
                self.0.reason,
                fault.name()
            ),
            None => format!(
                "Decision(allow={}, reason={:?})",
                if self.0.allow { "True" } else { "False" },
                self.0.reason
            ),
        }
    }
}

/// A validated agent manifest; see `vedette.policy.AgentManifest`.
#[pyclass(frozen, module = "vedette.policy", name = "AgentManifest")]
pub struct AgentManifest(core::AgentManifest);

#[pymethods]
impl AgentManifest {
    #[staticmethod]
    fn from_bytes(data: &Bound<'_, PyAny>) -> PyResult<AgentManifest> {
        let bytes = borrow_bytes(data)?;
        core::AgentManifest::parse(bytes.as_slice())
            .map(AgentManifest)
            .map_err(PyErr::from)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }

    #[getter]
    fn version(&self) -> &str {
        &self.0.version
    }

    #[getter]
    fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    #[getter]
    fn model<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_python(py, &serde_json::Value::Object(self.0.model.clone()))
    }

    /// The declared tools, in manifest order, as dicts.
    #[getter]
    fn tools<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let tools = PyList::empty(py);
        for tool in &self.0.tools {
            let dict = PyDict::new(py);
            dict.set_item("name", &tool.name)?;
            dict.set_item("description", &tool.description)?;
            dict.set_item(
                "args_schema",
                json_to_python(py, &serde_json::Value::Object(tool.args_schema.clone()))?,
            )?;
            tools.append(dict)?;
        }
        Ok(tools)
    }

    #[getter]
    fn tool_names(&self) -> Vec<String> {
        self.0.tools.iter().map(|tool| tool.name.clone()).collect()
    }

    #[getter]
    fn prompts(&self) -> BTreeMap<String, Digest> {
        self.0
            .prompts
            .iter()
            .map(|(name, digest)| (name.clone(), Digest(*digest)))
            .collect()
    }

    #[getter]
    fn config(&self) -> BTreeMap<String, Digest> {
        self.0
            .config
            .iter()
            .map(|(name, digest)| (name.clone(), Digest(*digest)))
            .collect()
    }

    /// The behaviour section the fingerprint is computed over.
    #[getter]
    fn behaviour<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_python(py, self.0.behaviour())
    }

    #[getter]
    fn behavioral_fingerprint(&self) -> Digest {
        Digest(self.0.behavioral_fingerprint())
    }

    fn declares_tool(&self, name: &str) -> bool {
        self.0.declares_tool(name)
    }

    fn __repr__(&self) -> String {
        format!(
            "AgentManifest(name={:?}, version={:?}, behavioral_fingerprint='{}')",
            self.0.name,
            self.0.version,
            self.0.behavioral_fingerprint()
        )
    }
}

/// Walks a Python value into a Rego value. Only JSON's shapes are accepted:
/// dict with str keys, list, tuple, str, int, float (finite), bool, None.
fn python_to_value(value: &Bound<'_, PyAny>, depth: usize) -> Result<Value, String> {
    if depth > MAX_INPUT_DEPTH {
        return Err(format!("nested deeper than {MAX_INPUT_DEPTH} levels"));
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(flag) = value.cast::<PyBool>() {
        return Ok(Value::Bool(flag.is_true()));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return text
            .to_str()
            .map(Value::from)
            .map_err(|_| "a string contains a lone surrogate".to_string());
    }
    if let Ok(integer) = value.cast::<PyInt>() {
        if let Ok(small) = integer.extract::<i64>() {
            return Ok(Value::from(small));
        }
        if let Ok(large) = integer.extract::<u64>() {
            return Ok(Value::from(large));
        }
        return Err(format!("integer {integer} is out of the 64-bit range"));
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        let number = float.value();
        if !number.is_finite() {
            return Err(format!("{number} is not a finite number"));
        }
        return Ok(Value::from(number));
    }
    if let Ok(members) = value.cast::<PyDict>() {
        let mut object = BTreeMap::new();
        for (name, item) in members.iter() {
            let Ok(name) = name.cast::<PyString>() else {
                return Err(format!("object keys must be str, got {}", type_name(&name)));
            };
            let name = name
                .to_str()
                .map_err(|_| "a key contains a lone surrogate".to_string())?;
            object.insert(Value::from(name), python_to_value(&item, depth + 1)?);
        }
        return Ok(Value::from(object));
    }
    if let Ok(items) = value.cast::<PyList>() {
        let mut array = Vec::with_capacity(items.len());
        for item in items.iter() {
            array.push(python_to_value(&item, depth + 1)?);
        }
        return Ok(Value::from(array));
    }
    if let Ok(items) = value.cast::<PyTuple>() {
        let mut array = Vec::with_capacity(items.len());
        for item in items.iter() {
            array.push(python_to_value(&item, depth + 1)?);
        }
        return Ok(Value::from(array));
    }
    Err(format!("{} has no JSON form", type_name(value)))
}

fn value_to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null | Value::Undefined => py.None().into_bound(py),
        Value::Bool(flag) => PyBool::new(py, *flag).to_owned().into_any(),
        Value::Number(_) => {
            if let Ok(integer) = value.as_i64() {
                integer.into_pyobject(py)?.into_any()
            } else if let Ok(integer) = value.as_u64() {
                integer.into_pyobject(py)?.into_any()
            } else {
                value
                    .as_f64()
                    .map_err(errors::invalid_value)?
                    .into_pyobject(py)?
                    .into_any()
            }
        }
        Value::String(text) => PyString::new(py, text).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items.iter() {
                list.append(value_to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Set(items) => {
            let list = PyList::empty(py);
            for item in items.iter() {
                list.append(value_to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(members) => {
            let dict = PyDict::new(py);
            for (name, item) in members.iter() {
                let key = match name {
                    Value::String(text) => PyString::new(py, text).into_any(),
                    other => {
                        PyString::new(py, &other.to_json_str().map_err(errors::invalid_value)?)
                            .into_any()
                    }
                };
                dict.set_item(key, value_to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

pub(super) fn json_to_python<'py>(
    py: Python<'py>,
    value: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => py.None().into_bound(py),
        Json::Bool(flag) => PyBool::new(py, *flag).to_owned().into_any(),
        Json::Number(number) => {
            if let Some(integer) = number.as_i64() {
                integer.into_pyobject(py)?.into_any()
            } else if let Some(integer) = number.as_u64() {
                integer.into_pyobject(py)?.into_any()
            } else {
                number
                    .as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
            }
        }
        Json::String(text) => PyString::new(py, text).into_any(),
        Json::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_python(py, item)?)?;
            }
            list.into_any()
        }
        Json::Object(members) => {
            let dict = PyDict::new(py);
            for (name, item) in members {
                dict.set_item(name, json_to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// A tool's argument JSON Schema, compiled once; see `rust/policy/args.rs`.
#[pyclass(frozen, module = "vedette._core", name = "ArgsValidator")]
pub struct ArgsValidator(pub(super) Arc<core::ArgsValidator>);

#[pymethods]
impl ArgsValidator {
    /// Compiles the schema given as JSON text; ValueError if it is not a valid schema.
    #[new]
    fn new(py: Python<'_>, schema_json: &Bound<'_, PyAny>) -> PyResult<ArgsValidator> {
        let bytes = borrow_bytes(schema_json)?;
        let slice = bytes.as_slice();
        py.detach(|| {
            let schema: serde_json::Value = serde_json::from_slice(slice)
                .map_err(|err| format!("args_schema is not JSON: {err}"))?;
            core::ArgsValidator::new(&schema)
        })
        .map(|validator| ArgsValidator(Arc::new(validator)))
        .map_err(errors::invalid_value)
    }

    /// None when the arguments (JSON text) fit the schema, else what is wrong and where.
    fn problem(&self, py: Python<'_>, args_json: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let bytes = borrow_bytes(args_json)?;
        let slice = bytes.as_slice();
        Ok(if worth_detaching(slice.len()) {
            py.detach(|| self.0.problem_json(slice))
        } else {
            self.0.problem_json(slice)
        })
    }
}
