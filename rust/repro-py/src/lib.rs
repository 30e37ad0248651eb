//! The extension module `repro_core._core`: a thin layer over the `repro-core` crate.
//!
//! Arguments are extracted while the GIL is held (the Python wrappers in `repro_core` have
//! already normalised dtypes and ndim), then the Rust core runs with the GIL released.

use std::borrow::Cow;

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyType};
use repro_core::{Batch, CriticTarget, Delimiters, Estimator, Mask, Options, ProcessStd, Rows, TokenText, Widen};

mod threads;

/// `repro_core.errors.ReproError`, the package's one exception (a `ValueError` with `argument`).
static REPRO_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn repro_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    REPRO_ERROR.import(py, "repro_core.errors", "ReproError")
}

/// The one mapping of core errors to Python: `ReproError(argument, message)`.
fn raise(error: repro_core::Error) -> PyErr {
    Python::attach(|py| match repro_error(py) {
        Ok(class) => PyErr::from_type(class.clone(), (error.argument, error.message)),
        Err(import_error) => import_error,
    })
}

/// Runs `compute` without the GIL, in parallel when `elements` is large enough, mapping core
/// errors to `ReproError`.
fn detach<T: Send>(
    py: Python<'_>,
    elements: usize,
    compute: impl FnOnce(bool) -> repro_core::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| threads::run(elements, compute)).map_err(raise)
}

#[derive(FromPyObject)]
enum Ids2<'py> {
    I64(PyReadonlyArray2<'py, i64>),
    I32(PyReadonlyArray2<'py, i32>),
}

#[derive(FromPyObject)]
enum Floats2<'py> {
    F64(PyReadonlyArray2<'py, f64>),
    F32(PyReadonlyArray2<'py, f32>),
}

#[derive(FromPyObject)]
enum Mask2<'py> {
    Bool(PyReadonlyArray2<'py, bool>),
    I64(PyReadonlyArray2<'py, i64>),
    I32(PyReadonlyArray2<'py, i32>),
    I8(PyReadonlyArray2<'py, i8>),
    U8(PyReadonlyArray2<'py, u8>),
    F64(PyReadonlyArray2<'py, f64>),
    F32(PyReadonlyArray2<'py, f32>),
}

#[derive(FromPyObject)]
enum Ints1<'py> {
    I64(PyReadonlyArray1<'py, i64>),
    I32(PyReadonlyArray1<'py, i32>),
}

#[derive(FromPyObject)]
enum Floats1<'py> {
    F64(PyReadonlyArray1<'py, f64>),
    F32(PyReadonlyArray1<'py, f32>),
}

type RowsRef<'a, T> = Box<dyn Rows<T> + 'a>;

impl Ids2<'_> {
    fn rows(&self) -> RowsRef<'_, i64> {
        match self {
            Self::I64(a) => Box::new(a.as_array()),
            Self::I32(a) => Box::new(a.as_array()),
        }
    }
}

impl Floats2<'_> {
    fn rows(&self) -> RowsRef<'_, f64> {
        match self {
            Self::F64(a) => Box::new(a.as_array()),
            Self::F32(a) => Box::new(a.as_array()),
        }
    }
}

impl Mask2<'_> {
    fn rows(&self) -> Box<dyn Mask + '_> {
        match self {
            Self::Bool(a) => Box::new(a.as_array()),
            Self::I64(a) => Box::new(a.as_array()),
            Self::I32(a) => Box::new(a.as_array()),
            Self::I8(a) => Box::new(a.as_array()),
            Self::U8(a) => Box::new(a.as_array()),
            Self::F64(a) => Box::new(a.as_array()),
            Self::F32(a) => Box::new(a.as_array()),
        }
    }
}

/// The array's data when it is contiguous, else a copy.
fn borrowed<'a, T: numpy::Element + Clone>(array: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    array.as_slice().map_or_else(|_| Cow::Owned(array.as_array().to_vec()), Cow::Borrowed)
}

/// A widened copy of a narrower dtype.
fn widened<T: Clone, S: numpy::Element + Widen<T>>(array: &PyReadonlyArray1<'_, S>) -> Cow<'static, [T]> {
    Cow::Owned(array.as_array().iter().map(|&v| v.widen()).collect())
}

impl Ints1<'_> {
    fn values(&self) -> Cow<'_, [i64]> {
        match self {
            Self::I64(a) => borrowed(a),
            Self::I32(a) => widened(a),
        }
    }
}

impl Floats1<'_> {
    fn values(&self) -> Cow<'_, [f64]> {
        match self {
            Self::F64(a) => borrowed(a),
            Self::F32(a) => widened(a),
        }
    }
}

/// A compiled paragraph-break rule for one vocabulary (see `repro_core.Delimiters`).
#[pyclass(frozen, module = "repro_core._core")]
struct DelimiterTable(Delimiters);

#[pymethods]
impl DelimiterTable {
    #[staticmethod]
    fn from_ids(ids: Ints1<'_>) -> PyResult<Self> {
        Delimiters::from_ids(&ids.values()).map(Self).map_err(raise)
    }

    #[staticmethod]
    fn from_text(
        leading_newlines: PyReadonlyArray1<'_, u32>,
        trailing_newlines: PyReadonlyArray1<'_, u32>,
        whitespace_only: PyReadonlyArray1<'_, bool>,
        min_newlines: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let min_newlines = integer(min_newlines, "min_newlines")?;
        let min_newlines = u32::try_from(min_newlines).map_err(|_| {
            raise(repro_core::Error::new(
                "min_newlines",
                format!("expected an integer in [1, 2^32), got {min_newlines}"),
            ))
        })?;
        let (leading, trailing, whitespace) =
            (leading_newlines.as_array(), trailing_newlines.as_array(), whitespace_only.as_array());
        if leading.len() != trailing.len() || leading.len() != whitespace.len() {
            return Err(raise(repro_core::Error::new(
                "delimiters",
                format!(
                    "expected one table entry per token, got {} leading_newlines, {} trailing_newlines, {} whitespace_only",
                    leading.len(),
                    trailing.len(),
                    whitespace.len()
                ),
            )));
        }
        let table = (0..leading.len())
            .map(|i| TokenText {
                leading_newlines: leading[i],
                trailing_newlines: trailing[i],
                whitespace_only: whitespace[i],
            })
            .collect();
        Delimiters::from_text(table, min_newlines).map(Self).map_err(raise)
    }

    fn __repr__(&self) -> String {
        match &self.0 {
            Delimiters::Tokens { ids } => format!("DelimiterTable(ids={ids:?})"),
            Delimiters::Text { table, min_newlines } => {
                format!("DelimiterTable(vocab={}, min_newlines={min_newlines})", table.len())
            }
        }
    }
}

type Int64Array<'py> = Bound<'py, PyArray1<i64>>;
type Float64Array<'py> = Bound<'py, PyArray1<f64>>;
type Float32Matrix<'py> = Bound<'py, PyArray2<f32>>;

/// An integer argument. bool is an int to Python, but not an integer here (as in `repro_core._api`).
fn integer(value: &Bound<'_, PyAny>, argument: &'static str) -> PyResult<i64> {
    let refuse = || {
        let shown = value.repr().map_or_else(|_| value.get_type().to_string(), |r| r.to_string());
        raise(repro_core::Error::new(argument, format!("expected an integer that fits int64, got {shown}")))
    };
    if value.is_instance_of::<PyBool>() {
        return Err(refuse());
    }
    value.extract::<i64>().map_err(|_| refuse())
}

fn optional_integer(value: Option<&Bound<'_, PyAny>>, argument: &'static str) -> PyResult<Option<i64>> {
    value.map(|v| integer(v, argument)).transpose()
}

fn cut_count(k: &Bound<'_, PyAny>) -> PyResult<usize> {
    let k = integer(k, "k")?;
    usize::try_from(k).map_err(|_| raise(repro_core::Error::new("k", format!("expected an integer >= 0, got {k}"))))
}

/// The options of `compute_advantages`, read from the mapping `repro_core._api` builds.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct AdvantageOptions {
    alpha: f64,
    gamma: f64,
    lam: f64,
    norm_by_std: bool,
    process_std: String,
    stats_include_baseline: bool,
    drop_first_token_reward: bool,
    critic_target: String,
}

impl AdvantageOptions {
    /// The core's options, with the names of the enums parsed.
    fn parse(self) -> PyResult<Options> {
        Ok(Options {
            alpha: self.alpha,
            gamma: self.gamma,
            lam: self.lam,
            norm_by_std: self.norm_by_std,
            process_std: ProcessStd::parse(&self.process_std).map_err(raise)?,
            stats_include_baseline: self.stats_include_baseline,
            drop_first_token_reward: self.drop_first_token_reward,
            critic_target: CriticTarget::parse(&self.critic_target).map_err(raise)?,
        })
    }
}

/// The checks of every option of `select_cuts`, `score_steps` and `compute_advantages`, without data.
#[pyfunction]
#[pyo3(signature = (estimator, k, w, stability_ema, options))]
fn check_options(
    estimator: &str,
    k: &Bound<'_, PyAny>,
    w: f64,
    stability_ema: Option<f64>,
    options: AdvantageOptions,
) -> PyResult<()> {
    let estimator = Estimator::parse(estimator).map_err(raise)?;
    cut_count(k)?;
    repro_core::check_score_options(w, stability_ema).map_err(raise)?;
    options.parse()?.check(estimator).map_err(raise)
}

#[pyfunction]
#[pyo3(signature = (token_ids, response_mask, entropies, delimiters, k, think_end_id))]
fn select_cuts<'py>(
    py: Python<'py>,
    token_ids: Ids2<'py>,
    response_mask: Mask2<'py>,
    entropies: Floats2<'py>,
    delimiters: &DelimiterTable,
    k: &Bound<'py, PyAny>,
    think_end_id: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Int64Array<'py>, Int64Array<'py>, Int64Array<'py>)> {
    let k = cut_count(k)?;
    let think_end_id = optional_integer(think_end_id, "think_end_id")?;
    let (ids, mask, entropies) = (token_ids.rows(), response_mask.rows(), entropies.rows());
    let (batch, width) = mask.shape();
    let cuts = detach(py, batch * width, |parallel| {
        repro_core::select_cuts(&*ids, &*mask, &*entropies, &delimiters.0, k, think_end_id, parallel)
    })?;
    Ok((cuts.offsets.into_pyarray(py), cuts.positions.into_pyarray(py), cuts.ends.into_pyarray(py)))
}

#[pyfunction]
#[pyo3(signature = (token_ids, response_mask, delimiters, think_end_id))]
fn segment_paragraphs<'py>(
    py: Python<'py>,
    token_ids: Ids2<'py>,
    response_mask: Mask2<'py>,
    delimiters: &DelimiterTable,
    think_end_id: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Int64Array<'py>, Int64Array<'py>, Int64Array<'py>)> {
    let think_end_id = optional_integer(think_end_id, "think_end_id")?;
    let (ids, mask) = (token_ids.rows(), response_mask.rows());
    let (batch, width) = mask.shape();
    let segments = detach(py, batch * width, |parallel| {
        repro_core::segment_paragraphs(&*ids, &*mask, &delimiters.0, think_end_id, parallel)
    })?;
    Ok((segments.offsets.into_pyarray(py), segments.starts.into_pyarray(py), segments.ends.into_pyarray(py)))
}

#[pyfunction]
#[pyo3(signature = (j_values, offsets, w, stability_ema))]
fn score_steps<'py>(
    py: Python<'py>,
    j_values: Floats1<'py>,
    offsets: Ints1<'py>,
    w: f64,
    stability_ema: Option<f64>,
) -> PyResult<(Float64Array<'py>, Float64Array<'py>, Float64Array<'py>, Float64Array<'py>)> {
    let (j_values, offsets) = (j_values.values(), offsets.values());
    let steps = detach(py, 0, |_| repro_core::score_steps(&j_values, &offsets, w, stability_ema))?;
    Ok((
        steps.magnitude.into_pyarray(py),
        steps.stability.into_pyarray(py),
        steps.score.into_pyarray(py),
        steps.reward.into_pyarray(py),
    ))
}

#[pyfunction]
#[pyo3(signature = (
    estimator, outcome_rewards, step_rewards, offsets, positions, response_mask, group_index, values,
    token_rewards, options,
))]
#[allow(clippy::too_many_arguments)]
fn compute_advantages<'py>(
    py: Python<'py>,
    estimator: &str,
    outcome_rewards: Floats1<'py>,
    step_rewards: Floats1<'py>,
    offsets: Ints1<'py>,
    positions: Ints1<'py>,
    response_mask: Mask2<'py>,
    group_index: Ints1<'py>,
    values: Option<Floats2<'py>>,
    token_rewards: Option<Floats2<'py>>,
    options: AdvantageOptions,
) -> PyResult<(Float32Matrix<'py>, Option<Float32Matrix<'py>>)> {
    let estimator = Estimator::parse(estimator).map_err(raise)?;
    let options = options.parse()?;
    let (outcome_rewards, step_rewards) = (outcome_rewards.values(), step_rewards.values());
    let (offsets, positions, group_index) = (offsets.values(), positions.values(), group_index.values());
    let mask = response_mask.rows();
    let values = values.as_ref().map(Floats2::rows);
    let token_rewards = token_rewards.as_ref().map(Floats2::rows);
    let (rows, width) = mask.shape();
    let result = detach(py, rows * width, |parallel| {
        let batch = Batch {
            outcome_rewards: &outcome_rewards,
            step_rewards: &step_rewards,
            offsets: &offsets,
            positions: &positions,
            response_mask: &*mask,
            group_index: &group_index,
            values: values.as_deref(),
            token_rewards: token_rewards.as_deref(),
        };
        repro_core::compute_advantages(estimator, &batch, &options, parallel)
    })?;
    Ok((result.advantages.into_pyarray(py), result.returns.map(|r| r.into_pyarray(py))))
}

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::{check_options, compute_advantages, score_steps, segment_paragraphs, select_cuts, DelimiterTable};

    #[pymodule_init]
    fn init(module: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        module.add("PARALLEL_MIN_ELEMENTS", super::threads::PARALLEL_MIN_ELEMENTS)?;
        module.add("ESTIMATORS", pyo3::types::PyTuple::new(module.py(), repro_core::Estimator::NAMES)?)?;
        module.add("ReproError", super::repro_error(module.py())?)
    }
}
