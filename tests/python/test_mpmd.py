"""One process per device (MPMD) on CPU: several Python processes joined by
jax.distributed (coordinator on localhost), each with its own CPU devices and gloo
collectives, running jaxmg's ops on one global mesh (tests/python/mpmd_worker.py does the
work and the checks; this file launches the processes and reads their verdicts).

Covered: potrs/potri/syevd in the four dtypes with tiles that divide the shard and tiles
that do not (padding), jaxmg.linalg, natural/reversed/interleaved process-to-mesh orders,
2 and 3 processes, 1 and 2 devices per process (local positions next to remote ones), a
matrix that is not positive definite (same info and NaN in every process), a peer killed
while another waits in a call (an error long before the deadline, no hang) and a peer that
stays away (the deadline's error naming its position), and no /dev/shm/jaxmg-<token>-*
left behind.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpmd_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(timeout_s: float) -> dict:
    env = dict(os.environ)
    # The test session's XLA_FLAGS ask for 4 host devices; the worker chooses its own count.
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = flags.strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["JAXMG_TIMEOUT"] = str(timeout_s)
    python_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(WORKER))), "python")
    import jaxmg

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(jaxmg.__file__)))
    paths = [pkg_parent] + ([python_dir] if os.path.isdir(python_dir) else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).strip(os.pathsep)
    return env


def _launch(nproc: int, *args: str, timeout_s: float = 30.0, wall: float = 150.0):
    """Runs the worker in nproc processes; returns [(returncode, output)]."""
    port = _free_port()
    env = _env(timeout_s)
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, "--process-id", str(i), "--num-processes", str(nproc),
             "--port", str(port), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(nproc)
    ]
    out = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=wall)
            out.append((p.returncode, text))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        texts = [p.communicate()[0] for p in procs]
        pytest.fail("MPMD workers did not finish in time (a hang):\n" + "\n".join(
            t[-3000:] for t in texts))
    return out


def _checks(out, expect_rc=None):
    tokens = set()
    for i, (rc, text) in enumerate(out):
        fails = [ln for ln in text.splitlines() if " FAIL " in ln]
        summary = [ln for ln in text.splitlines() if " SUMMARY " in ln]
        assert summary, f"process {i} printed no summary (rc {rc}):\n{text[-4000:]}"
        assert not fails, f"process {i}:\n" + "\n".join(fails) + "\n" + text[-4000:]
        passed = int(summary[-1].split()[-2])
        assert passed > 0, text[-2000:]
        if expect_rc is not None:
            assert rc == expect_rc, f"process {i} exited with {rc}:\n{text[-4000:]}"
        m = re.search(r"TOKEN (\w+)", text)
        if m:
            tokens.add(m.group(1))
    return tokens


def _assert_no_segments(tokens):
    for tok in tokens:
        left = [f for f in os.listdir("/dev/shm") if f.startswith(f"jaxmg-{tok}")]
        assert not left, f"shared-memory segments left behind: {left}"


def test_ops_two_processes_all_dtypes():
    out = _launch(2, "--scenario", "ops", "--orders", "natural,reversed")
    _assert_no_segments(_checks(out, expect_rc=0))


def test_ops_two_processes_two_devices_each():
    out = _launch(2, "--scenario", "ops", "--devices-per-process", "2",
                  "--orders", "interleaved,reversed", "--dtypes", "float64,complex64",
                  "--linalg", "0")
    _assert_no_segments(_checks(out, expect_rc=0))


def test_ops_single_engine_across_processes():
    """engine="single" on a mesh spanning processes: potrs and syevd take their all-gather
    bodies there (their one-call bodies need every shard in one process), potri the gather as
    always."""
    out = _launch(2, "--scenario", "ops", "--engine", "single", "--orders", "reversed",
                  "--dtypes", "float64,complex64", "--linalg", "0")
    _assert_no_segments(_checks(out, expect_rc=0))


def test_ops_three_processes():
    out = _launch(3, "--scenario", "ops", "--orders", "reversed", "--dtypes",
                  "float32,complex128", "--linalg", "0")
    _assert_no_segments(_checks(out, expect_rc=0))


def test_not_positive_definite_same_everywhere():
    out = _launch(2, "--scenario", "notpd", "--orders", "natural,reversed")
    _assert_no_segments(_checks(out, expect_rc=0))


@pytest.mark.parametrize("victim_holds", ["follower", "leader"])
def test_peer_killed_fails_fast(victim_holds):
    # Process 1 dies; in the reversed order it holds mesh position 0 (the leader).
    order = "natural" if victim_holds == "follower" else "reversed"
    out = _launch(2, "--scenario", "kill", "--orders", order, timeout_s=60.0)
    survivor_rc, text = out[0]
    assert " PASS peer killed" in text, text[-4000:]
    assert survivor_rc == 0, text[-4000:]
    _assert_no_segments(_checks(out[:1]))


def test_peer_absent_times_out():
    out = _launch(2, "--scenario", "timeout", timeout_s=3.0)
    _, text = out[0]
    assert " PASS peer absent" in text, text[-4000:]
    # The absent process is stopped by jax.distributed once the coordinator (the survivor)
    # has left; only the survivor's verdict counts.
    _assert_no_segments(_checks(out[:1]))
