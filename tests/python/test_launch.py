"""``python -m jaxmg.launch``: K JAX processes on this machine (here on CPU devices), each
with jax.distributed initialized, and the cuSOLVERMp engine's set-up exchange between them
(the NCCL unique id travels through JAX's key-value store, no MPI); a process that dies
stops the others and the launcher reports it instead of hanging."""

import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "launch_worker.py")


def _launch(n, mode, out, timeout=120, extra=()):
    env = dict(os.environ, JAXMG_TIMEOUT="60")
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "jaxmg.launch", "--cpu", "-n", str(n), *extra,
                           WORKER, mode, str(out)], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("n", [2, 3])
def test_every_process_gets_the_bytes_process_0_made(tmp_path, n):
    r = _launch(n, "share", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = [(tmp_path / str(i)).read_bytes() for i in range(n)]
    assert len(got[0]) == 128 and all(g == got[0] for g in got)


@pytest.mark.parametrize("mode,status,says", [("die", 3, "exited with status 3"),
                                              ("kill", 128 + 9, "was killed by signal 9")])
def test_a_dead_process_stops_the_others(tmp_path, mode, status, says):
    t0 = time.monotonic()
    r = _launch(3, mode, tmp_path, extra=("--grace", "2"))
    assert r.returncode == status, r.stderr[-3000:]
    assert f"process 1 {says}; stopping the others (0, 2)" in r.stderr
    assert time.monotonic() - t0 < 50  # well before the exchange's own 60 s timeout


def test_bad_arguments():
    r = subprocess.run([sys.executable, "-m", "jaxmg.launch", "-n", "2", "--devices", "0",
                        WORKER, "share", "."], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--devices names 1 GPUs for 2 processes" in r.stderr
