"""pytest plugin: run JAX's own linalg tests with jaxmg.linalg substituted for JAX's functions.

Loaded by run_jax_tests.py with ``-p jaxmg_subst_plugin`` (this directory on PYTHONPATH);
JAX's test files are never copied here, they are fetched at run time outside the repo.

What it does, per test (only while the test runs, i.e. inside pytest_runtest_call):

- replaces the attributes the tests call, on the public modules ``jax.numpy.linalg`` (the
  tests' ``jnp.linalg.X``) and ``jax.scipy.linalg`` (``jsp.linalg.X``), by wrappers around
  the ``jaxmg.linalg`` functions of the same names. NumPy/SciPy (the references) are not
  touched, and neither is ``jax._src.numpy.linalg`` / ``jax._src.scipy.linalg`` (what JAX's
  own internals call), so JAX-internal uses keep JAX's implementations. While a jaxmg
  function runs, the original attributes are restored (jaxmg.linalg.cho_solve of a dense
  ``(c, lower)`` factor calls ``jax.scipy.linalg.cho_solve``, which must be JAX's).
- in custom_linear_solve_test.py / custom_root_test.py only ``cho_factor``/``cho_solve`` are
  replaced: there ``jnp.linalg.solve`` is the test's reference, not the function under test.
- deselects every test that is not a test of the substituted functions (SELECT below).
- records each call of a substituted function (shapes, dtypes, keywords, whether the
  concrete input is Hermitian positive definite in the triangle jaxmg reads) and each test's
  outcome, and writes them as JSON to $JAXMG_RESULTS at the end of the session.

Environment:
  JAXMG_SUBST       1 (default): substitute; 0: baseline, JAX's own functions, same selection
  JAXMG_SUBST_MODE  default: inputs as the test makes them (a NumPy/unsharded array runs on
                    one device); rows: concrete square inputs whose N the device count
                    divides are first put on a 1-D mesh of all devices, sharded by rows
                    (P(..., 'rows', None)); traced inputs and other N are passed as they are
  JAXMG_RESULTS     path of the JSON written at the end
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import traceback

import numpy as np
import pytest

# ---- which tests --------------------------------------------------------------------------

# file -> class -> method -> function family. A method matches item names ``method`` and
# ``method<digits>`` (JAX's sample_product numbers the cases).
SELECT = {
    "linalg_test.py": {
        "NumpyLinalgTest": {
            "testSlogdet": "slogdet", "testSlogdetGrad": "slogdet", "testIssue1213": "slogdet",
            "testSolve": "solve", "testSolveBroadcasting": "solve", "testIssue1151": "solve",
            "testInv": "inv", "testInvDtypeError": "inv",
            "testIssue669": "eigh", "testIssue1383": "eigh",
            "testLinalgPrimitivesInvalidDtype": "eigh",
        },
        "ScipyLinalgTest": {
            "testSolve": "solve",
            "testChoSolve": "cho_solve", "testChoSolveBroadcast": "cho_solve",
        },
    },
    "eigh_test.py": {
        "EighTest": {m: "eigh" for m in (
            "testEigh", "testEighZeroDiagonal", "testEighTinyNorm", "testEighRankDeficient",
            "testEighIdentity", "testEighGrad", "testEighGradPrecision",
            "testEighGradRankPromotion", "testEighBatching")},
    },
    "custom_linear_solve_test.py": {
        "CustomLinearSolveTest": {"test_custom_linear_solve_cholesky": "cho_factor+cho_solve"},
    },
    "custom_root_test.py": {
        "CustomRootTest": {"test_custom_root_with_custom_linear_solve": "cho_factor+cho_solve",
                           "test_custom_root_with_aux": "cho_factor+cho_solve"},
    },
}

# Tests of these families in the same files that are deliberately not run, with the reason.
EXCLUDED = {
    ("eigh_test.py", "EighTest", "testEigvalsh"): ("eigh", "jnp.linalg.eigvalsh: not substituted (jaxmg has no eigvalsh)"),
    ("eigh_test.py", "EighTest", "testEighLargeMatrix"): ("eigh", "lax.linalg.eigh primitive (and GPU only, unittest.skip)"),
    ("eigh_test.py", "EighTest", "testEighSubsetByIndex"): ("eigh", "lax.linalg.eigh(subset_by_index=...) primitive, TPU only"),
    ("eigh_test.py", "LaxLinalgEighTest", "*"): ("eigh", "lax.linalg.eigh / eigh_tridiagonal primitives"),
    ("linalg_test.py", "NumpyLinalgTest", "testCholesky"): ("cho_factor+cho_solve", "jnp.linalg.cholesky (dense L): not substituted"),
    ("linalg_test.py", "NumpyLinalgTest", "testCholeskyGradPrecision"): ("cho_factor+cho_solve", "jnp.linalg.cholesky: not substituted"),
}

SUBST_ALL = {
    "jax.numpy.linalg": ("solve", "inv", "eigh", "slogdet"),
    "jax.scipy.linalg": ("cho_factor", "cho_solve", "solve", "inv", "eigh"),
}
SUBST_PER_FILE = {
    "custom_linear_solve_test.py": {"jax.scipy.linalg": ("cho_factor", "cho_solve")},
    "custom_root_test.py": {"jax.scipy.linalg": ("cho_factor", "cho_solve")},
}

_ENABLED = os.environ.get("JAXMG_SUBST", "1") != "0"
_MODE = os.environ.get("JAXMG_SUBST_MODE", "default")
_RESULTS = os.environ.get("JAXMG_RESULTS")


def _match(item):
    """(file, class, method, family) of a selected item, or None; excluded: (…, 'EXCLUDED')."""
    fname = os.path.basename(str(item.fspath))
    cls = item.cls.__name__ if getattr(item, "cls", None) is not None else ""
    name = item.name
    for method, fam in SELECT.get(fname, {}).get(cls, {}).items():
        if re.fullmatch(re.escape(method) + r"\d*", name):
            return fname, cls, method, fam
    for (f, c, m), (fam, _why) in EXCLUDED.items():
        if f == fname and c == cls and (m == "*" or re.fullmatch(re.escape(m) + r"\d*", name)):
            return fname, cls, m if m != "*" else name, "EXCLUDED:" + fam
    return None


# ---- call records -------------------------------------------------------------------------

_current: dict | None = None      # the record of the running test
_tests: dict = {}                 # nodeid -> record
_deselected = {"other": 0, "excluded": {}}


def _desc(x):
    if isinstance(x, (tuple, list)) and len(x) == 2 and hasattr(x[0], "shape"):
        return f"({_desc(x[0])}, lower={x[1]})"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        kind = "tracer" if _is_tracer(x) else type(x).__name__
        return f"{np.dtype(x.dtype).name}{list(x.shape)}:{kind}"
    if type(x).__name__ == "CholeskyFactor":
        return f"CholeskyFactor{list(x.shape)}"
    return type(x).__name__


def _is_tracer(x):
    import jax
    return isinstance(x, jax.core.Tracer)


def _concrete(x):
    import jax
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, jax.Array) and not _is_tracer(x):
        return np.asarray(x)
    return None


def _input_class(fn, a, kwargs):
    """How the matrix jaxmg reads relates to what it needs: 'hpd', 'hermitian-indefinite',
    'not-hermitian', 'empty', 'traced', 'dense-factor'."""
    if fn.endswith("cho_solve"):
        return "dense-factor" if isinstance(a, (tuple, list)) and hasattr(a[0], "shape") else "jaxmg-factor"
    m = _concrete(a)
    if m is None:
        return "traced"
    if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
        return "not-square"
    if m.shape[-1] == 0:
        return "empty"
    m = m.astype(np.complex128 if np.iscomplexobj(m) else np.float64).reshape((-1,) + m.shape[-2:])
    base = fn.split(".")[-1]
    if base in ("solve", "cho_factor"):
        lower = bool(kwargs.get("lower", False))
        if np.any(np.imag(np.diagonal(m, axis1=-2, axis2=-1)) != 0):
            return "not-hermitian"  # complex diagonal: jaxmg (as LAPACK) reads its real part
        strict = np.tril(m, -1) if lower else np.triu(m, 1)   # the triangle jaxmg reads
        d = np.real(np.diagonal(m, axis1=-2, axis2=-1))
        m = strict + np.conj(np.swapaxes(strict, -1, -2)) + np.einsum("bi,ij->bij", d, np.eye(m.shape[-1]))
    elif base == "eigh":
        return "hermitian-read"  # eigh reads (A + A^H)/2 or one triangle: always Hermitian
    herm = np.allclose(m, np.conj(np.swapaxes(m, -1, -2)), rtol=1e-6, atol=1e-6)
    if not herm:
        return "not-hermitian"
    try:
        np.linalg.cholesky(m)
        return "hpd"
    except np.linalg.LinAlgError:
        return "hermitian-indefinite"


def _record(fn, args, kwargs, sharded):
    if _current is None:
        return
    calls = _current["calls"]
    a = args[0] if args else kwargs.get("a", kwargs.get("c_and_lower"))
    try:
        cls = _input_class(fn, a, kwargs)
    except Exception as e:  # never let the bookkeeping fail a test
        cls = f"?{type(e).__name__}"
    rec = {"fn": fn, "args": [_desc(x) for x in args],
           "kwargs": {k: (v if isinstance(v, (bool, int, str, type(None))) else _desc(v))
                      for k, v in kwargs.items()},
           "input": cls, "sharded": sharded}
    key = json.dumps(rec, sort_keys=True)
    if key not in _current["_seen"] and len(calls) < 40:
        _current["_seen"].add(key)
        calls.append(rec)
    _current["ncalls"] += 1


# ---- substitution -------------------------------------------------------------------------

_originals: dict = {}   # (module, attr) -> original
_active: list = []      # (module, attr, wrapper) installed now


@contextlib.contextmanager
def _restored():
    saved = list(_active)
    for mod, attr, _ in saved:
        setattr(mod, attr, _originals[(mod.__name__, attr)])
    try:
        yield
    finally:
        for mod, attr, w in saved:
            setattr(mod, attr, w)


def _rows_mesh():
    import jax
    from jax.sharding import Mesh
    return Mesh(np.array(jax.devices()), ("rows",))


def _shard_rows(x):
    """x row-sharded over all devices, when it is a concrete square (..., N, N) array whose N
    the device count divides; else x unchanged. Returns (x, sharded)."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P
    ndev = jax.device_count()
    if ndev < 2 or _concrete(x) is None or getattr(x, "ndim", 0) < 2:
        return x, False
    n = x.shape[-1]
    if x.shape[-2] != n or n == 0 or n % ndev:
        return x, False
    spec = P(*([None] * (x.ndim - 2)), "rows", None)
    return jax.device_put(x, NamedSharding(_rows_mesh(), spec)), True


def _wrapper(label, new):
    @functools.wraps(new)
    def wrapped(*args, **kwargs):
        sharded = False
        if _MODE == "rows" and args and not label.endswith("cho_solve"):
            a, sharded = _shard_rows(args[0])
            args = (a,) + tuple(args[1:])
        _record(label, args, kwargs, sharded)
        with _restored():
            return new(*args, **kwargs)
    wrapped.__jaxmg_substitute__ = label
    return wrapped


def _install(fname):
    import importlib
    import jaxmg.linalg as mg
    table = SUBST_PER_FILE.get(fname, SUBST_ALL)
    for modname, attrs in table.items():
        mod = importlib.import_module(modname)
        short = {"jax.numpy.linalg": "jnp.linalg", "jax.scipy.linalg": "jsp.linalg"}[modname]
        for attr in attrs:
            _originals.setdefault((modname, attr), getattr(mod, attr))
            w = _wrapper(f"{short}.{attr}", getattr(mg, attr))
            setattr(mod, attr, w)
            _active.append((mod, attr, w))


def _uninstall():
    while _active:
        mod, attr, _ = _active.pop()
        setattr(mod, attr, _originals[(mod.__name__, attr)])


# ---- pytest hooks -------------------------------------------------------------------------

def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        m = _match(item)
        if m is None:
            drop.append(item)
            _deselected["other"] += 1
        elif m[3].startswith("EXCLUDED:"):
            drop.append(item)
            fam = m[3].split(":", 1)[1]
            key = f"{fam}: {m[1]}.{m[2] if m[2] in [k[2] for k in EXCLUDED] else '*'}"
            _deselected["excluded"][key] = _deselected["excluded"].get(key, 0) + 1
        else:
            item._jaxmg_match = m
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def _rec(item):
    m = item._jaxmg_match
    return _tests.setdefault(item.nodeid, {
        "file": m[0], "class": m[1], "method": m[2], "family": m[3],
        "outcome": None, "error": None, "calls": [], "ncalls": 0, "_seen": set()})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    global _current
    _current = _rec(item)
    if _ENABLED:
        _install(item._jaxmg_match[0])
    try:
        yield
    finally:
        _uninstall()
        _current = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if getattr(item, "_jaxmg_match", None) is None:
        return
    rec = _rec(item)
    if rep.failed:
        rec["outcome"] = "failed"
        exc = call.excinfo
        if exc is not None:
            msg = f"{exc.typename}: {exc.value}"
            rec["error"] = msg[:1500]
            tb = [f"{os.path.basename(str(e.path))}:{e.lineno + 1}:{e.name}"
                  for e in exc.traceback][-12:]
            rec["where"] = tb
    elif rep.skipped and rec["outcome"] != "failed":
        rec["outcome"] = "skipped"
        if isinstance(rep.longrepr, tuple):
            rec["error"] = str(rep.longrepr[2])[:300]
    elif rep.when == "call" and rec["outcome"] is None:
        rec["outcome"] = "passed"


def pytest_sessionfinish(session, exitstatus):
    if not _RESULTS:
        return
    import jax
    out = {
        "jax": jax.__version__, "devices": jax.device_count(), "x64": bool(jax.config.jax_enable_x64),
        "substituted": _ENABLED, "mode": _MODE,
        "num_generated_cases": os.environ.get("JAX_NUM_GENERATED_CASES", "10 (JAX default)"),
        "deselected": _deselected,
        "tests": {k: {kk: vv for kk, vv in v.items() if kk != "_seen"} for k, v in _tests.items()},
    }
    with open(_RESULTS, "w") as f:
        json.dump(out, f, indent=1, default=str)
