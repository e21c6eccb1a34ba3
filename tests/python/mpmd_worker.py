"""One process of a multi-process (MPMD) jaxmg job, for tests/python/test_mpmd.py (CPU devices)
and tests/gpu/mpmd/run_mpmd_gpu.sh (one GPU per process).

    python mpmd_worker.py --process-id I --num-processes P --port PORT --platform cpu|gpu
                          [--devices-per-process K] [--scenario ops|notpd|kill|timeout]

Every process builds the same global mesh over all devices of the job (in several orders),
runs the same calls and checks the results it can see against NumPy in float64: residual
ratios ‖B − A X‖ / (N ‖A‖ ‖X‖ ε) below 30, as LAPACK's tests. It prints one line per check,
"PASS ..." or "FAIL ...", then "TOKEN <t>" (the job's shared-memory token) and
"SUMMARY <passed> <failed>", and exits with status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--process-id", type=int, required=True)
    p.add_argument("--num-processes", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--platform", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--devices-per-process", type=int, default=1)
    p.add_argument("--scenario", choices=("ops", "notpd", "kill", "timeout"), default="ops")
    p.add_argument("--victim", type=int, default=1, help="process that dies / stays away")
    p.add_argument("--n", type=int, default=0, help="matrix order (default: per platform)")
    p.add_argument("--dtypes", default="float32,float64,complex64,complex128")
    p.add_argument("--orders", default="natural,reversed")
    p.add_argument("--linalg", type=int, default=1)
    p.add_argument("--engine", default="auto", choices=("auto", "mg", "single"))
    return p.parse_args()


ARGS = parse()
if ARGS.platform == "cpu":
    os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

if ARGS.platform == "cpu":
    jax.config.update("jax_num_cpu_devices", ARGS.devices_per_process)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_enable_x64", True)
init = dict(coordinator_address=f"localhost:{ARGS.port}", num_processes=ARGS.num_processes,
            process_id=ARGS.process_id)
if ARGS.platform == "gpu":
    # One GPU per process, every GPU visible (the leader maps the others' memory).
    init["local_device_ids"] = [ARGS.process_id]
jax.distributed.initialize(**init)

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import jaxmg  # noqa: E402

ME = jax.process_index()
RESULTS = {"pass": 0, "fail": 0}
THRESH = 30.0


def report(ok: bool, name: str, detail: str = "") -> None:
    RESULTS["pass" if ok else "fail"] += 1
    print(f"[p{ME}] {'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)


def host(x) -> np.ndarray:
    """The whole value of a global array, in every process."""
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def hpd(n: int, dtype, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    if np.iscomplexobj(np.zeros((), dtype)):
        m = m + 1j * rng.standard_normal((n, n))
    a = m @ m.conj().T / n + np.eye(n)
    return a.astype(dtype)


def orders(devs, names):
    out = {}
    k = ARGS.devices_per_process
    for name in names:
        if name == "natural":
            out[name] = list(devs)
        elif name == "reversed":
            out[name] = list(devs)[::-1]
        elif name == "interleaved" and k > 1:  # p0d0, p1d0, ..., p0d1, p1d1, ...
            by_proc = {}
            for d in devs:
                by_proc.setdefault(d.process_index, []).append(d)
            out[name] = [by_proc[p][i] for i in range(k) for p in sorted(by_proc)]
    return out


def mesh_of(order) -> Mesh:
    return Mesh(np.array(order), ("x",))


def shard(mesh, a):
    return jax.device_put(a, NamedSharding(mesh, P("x", None)))


def replicate(mesh, b):
    return jax.device_put(b, NamedSharding(mesh, P()))


def ratio(resid, n, *norms, dtype):
    den = n * eps(dtype)
    for v in norms:
        den *= max(v, 1e-300)
    return resid / den


def tiles(nloc: int):
    """(dividing, not dividing) tile sizes for a shard of nloc rows."""
    div = max(t for t in range(1, min(nloc, 64) + 1) if nloc % t == 0 and t < nloc) if nloc > 1 else 1
    nondiv = next((t for t in range(min(nloc - 1, 48), 1, -1) if nloc % t), None)
    return [t for t in (div, nondiv) if t]


def run_ops(mesh, label, dtypes, n):
    nd = mesh.devices.size
    for dtype in dtypes:
        A = hpd(n, dtype)
        A64 = A.astype(np.complex128 if np.iscomplexobj(A) else np.float64)
        nA = np.linalg.norm(A64, np.inf)
        rng = np.random.default_rng(1)
        B = rng.standard_normal((n, 3)).astype(dtype)
        for T in tiles(n // nd):
            tag = f"{label} {np.dtype(dtype).name} N={n} T={T}"
            try:
                x, info = jaxmg.potrs(shard(mesh, A), replicate(mesh, B), T_A=T, mesh=mesh,
                                      in_specs=(P("x", None), P(None, None)), return_status=True,
                                      engine=ARGS.engine)
                xh = host(x).astype(A64.dtype)
                r = ratio(np.linalg.norm(B - A64 @ xh, np.inf), n, nA,
                          np.linalg.norm(xh, np.inf), dtype=dtype)
                report(r < THRESH and int(host(info)) == 0, f"potrs {tag}", f"ratio={r:.2f}")

                inv, info = jaxmg.potri(shard(mesh, A), T_A=T, mesh=mesh,
                                        in_specs=(P("x", None),), return_status=True,
                                        engine=ARGS.engine)
                X = host(inv).astype(A64.dtype)
                r = ratio(np.linalg.norm(np.eye(n) - A64 @ X, np.inf), n, nA,
                          np.linalg.norm(X, np.inf), dtype=dtype)
                report(r < THRESH and int(host(info)) == 0, f"potri {tag}", f"ratio={r:.2f}")

                w, v, info = jaxmg.syevd(shard(mesh, A), T_A=T, mesh=mesh,
                                         in_specs=(P("x", None),), return_status=True,
                                         engine=ARGS.engine)
                W, V = host(w).astype(np.float64), host(v).astype(A64.dtype)
                r = ratio(np.linalg.norm(A64 @ V - V * W, np.inf), n, nA, dtype=dtype)
                o = ratio(np.linalg.norm(V.conj().T @ V - np.eye(n), np.inf), n, dtype=dtype)
                ok = r < THRESH and o < THRESH and int(host(info)) == 0
                report(ok, f"syevd {tag}", f"ratio={r:.2f} orth={o:.2f}")
            except Exception as e:  # a failing call is a failed check, not a crash
                report(False, f"ops {tag}", f"{type(e).__name__}: {e}")
                traceback.print_exc()


def run_linalg(mesh, label, n):
    from jaxmg import linalg

    A = hpd(n, np.float64, seed=3)
    b = np.random.default_rng(4).standard_normal(n)
    tag = f"{label} float64 N={n}"
    try:
        fac = linalg.cho_factor(shard(mesh, A), mesh=mesh, in_specs=(P("x", None),))
        x = host(linalg.cho_solve(fac, replicate(mesh, b)))
        report(np.allclose(A @ x, b, atol=1e-8), f"linalg.cho_factor+cho_solve {tag}")
        x = host(linalg.solve(shard(mesh, A), replicate(mesh, b), assume_a="pos", mesh=mesh,
                              in_specs=(P("x", None), P(None))))
        report(np.allclose(A @ x, b, atol=1e-8), f"linalg.solve {tag}")
        X = host(linalg.inv(shard(mesh, A), mesh=mesh, in_specs=(P("x", None),)))
        report(np.allclose(A @ X, np.eye(n), atol=1e-8), f"linalg.inv {tag}")
        w = host(linalg.eigh(shard(mesh, A), eigvals_only=True, mesh=mesh,
                             in_specs=(P("x", None),)))
        report(np.allclose(np.sort(w), np.linalg.eigvalsh(A), atol=1e-8), f"linalg.eigh {tag}")
    except Exception as e:
        report(False, f"linalg {tag}", f"{type(e).__name__}: {e}")
        traceback.print_exc()


def run_notpd(mesh, label, n):
    """A matrix that is not positive definite in a row owned by the last position: info is
    that row (1-based) and the outputs are NaN, in every process."""
    nd = mesh.devices.size
    for dtype in (np.float32, np.complex128):
        A = hpd(n, dtype, seed=5)
        k = (nd - 1) * (n // nd) + 1  # second row of the last shard
        A[k, :] = 0
        A[:, k] = 0
        A[k, k] = -1
        tag = f"{label} {np.dtype(dtype).name} N={n}"
        try:
            x, info = jaxmg.potrs(shard(mesh, A), replicate(mesh, np.ones((n, 1), dtype)),
                                  mesh=mesh, in_specs=(P("x", None), P(None, None)),
                                  return_status=True, engine=ARGS.engine)
            i, xh = int(host(info)), host(x)
            report(i == k + 1 and np.isnan(xh).all(), f"potrs not-PD {tag}",
                   f"info={i} expected={k + 1}")
            inv, info = jaxmg.potri(shard(mesh, A), mesh=mesh, in_specs=(P("x", None),),
                                    return_status=True, engine=ARGS.engine)
            i = int(host(info))
            report(i == k + 1 and np.isnan(host(inv)).all(), f"potri not-PD {tag}", f"info={i}")
        except Exception as e:
            report(False, f"not-PD {tag}", f"{type(e).__name__}: {e}")
            traceback.print_exc()


def run_failure(mesh, n, kill: bool):
    """Every process makes one call (so that all have registered), then the victim dies
    (kill) or stays away (timeout) while the others make a second call: they must fail with
    a clear error, the victim's death long before the deadline."""
    # The operands are placed first: placing host data is itself a collective, which would
    # fail (in gloo) before jaxmg is reached.
    a, b = shard(mesh, hpd(n, np.float64)), replicate(mesh, np.ones((n, 1)))
    solve = lambda: jaxmg.potrs(a, b, mesh=mesh, engine="mg",  # noqa: E731
                                in_specs=(P("x", None), P(None, None)))
    host(solve())
    multihost_utils.sync_global_devices("jaxmg-mpmd-warm")
    if ME == ARGS.victim:
        if kill:
            time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(jaxmg.get_timeout() + 8)
        report(True, "stayed away")
        return
    t0 = time.monotonic()
    try:
        host(solve())
        report(False, "call with a missing peer returned")
    except Exception as e:
        dt = time.monotonic() - t0
        msg = str(e)
        if kill:
            ok = "exited" in msg and f"process {ARGS.victim}" in msg and dt < jaxmg.get_timeout() / 2
        else:
            ok = "timed out" in msg and dt < jaxmg.get_timeout() + 20
        report(ok, f"{'peer killed' if kill else 'peer absent'}", f"after {dt:.1f} s: {msg[:300]}")


def main() -> int:
    devs = jax.devices()
    n = ARGS.n or (12 * len(devs) if ARGS.platform == "cpu" else 512)
    dtypes = [getattr(np, d) for d in ARGS.dtypes.split(",") if d]
    meshes = orders(devs, ARGS.orders.split(","))
    if ARGS.scenario == "ops":
        for label, order in meshes.items():
            mesh = mesh_of(order)
            run_ops(mesh, label, dtypes, n)
            if ARGS.linalg:
                run_linalg(mesh, label, n)
    elif ARGS.scenario == "notpd":
        for label, order in meshes.items():
            run_notpd(mesh_of(order), label, n)
    else:
        mesh = mesh_of(next(iter(meshes.values())))
        run_failure(mesh, n, kill=ARGS.scenario == "kill")
    token = jaxmg._mpmd._TOKEN or ""
    print(f"[p{ME}] TOKEN {token[:16]}", flush=True)
    print(f"[p{ME}] SUMMARY {RESULTS['pass']} {RESULTS['fail']}", flush=True)
    return 1 if RESULTS["fail"] else 0


if __name__ == "__main__":
    rc = main()
    if ARGS.scenario in ("kill", "timeout"):
        # A peer is gone: jax.distributed's shutdown barrier would wait for it. Leave at once,
        # removing what the failed call left in /dev/shm (the atexit hook is skipped by _exit).
        sys.stdout.flush()
        jaxmg._mpmd.cleanup()
        os._exit(rc)
    sys.exit(rc)
