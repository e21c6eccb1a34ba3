"""Runs a script as K JAX processes on this machine, one GPU each, the way a cluster runs it
on K nodes:

    python -m jaxmg.launch -n 4 script.py [args...]

Each process sees one GPU (``CUDA_VISIBLE_DEVICES``; ``--devices 0,2,...`` picks them) and
starts with ``jax.distributed.initialize`` already called (a coordinator on this host, the
process index = its rank), then runs the script as ``__main__``. A script written for a
cluster therefore runs unchanged; one that calls ``jax.distributed.initialize()`` itself
should do so only ``if not jax.distributed.is_initialized()``.

When a process fails or dies, the others are stopped (SIGTERM, then SIGKILL after
``--grace`` seconds) and the launcher exits with that process's status, naming it: no rank
is left waiting for a peer that is gone. ``--cpu`` runs the processes on CPU devices instead
(for tests of the process set-up on machines without GPUs).

On a cluster, use its launcher instead (``srun``, ``mpirun``): ``jax.distributed.initialize()``
reads SLURM's and Open MPI's environment by itself (docs/design.md, "The cuSOLVERMp engine").
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import socket
import subprocess
import sys
import time

import jax

ENV_RANK, ENV_SIZE, ENV_ADDR = "JAXMG_LAUNCH_RANK", "JAXMG_LAUNCH_SIZE", "JAXMG_LAUNCH_COORDINATOR"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(argv: list[str]) -> None:
    """In each process: jax.distributed from the launcher's environment, then the script."""
    jax.distributed.initialize(coordinator_address=os.environ[ENV_ADDR],
                               num_processes=int(os.environ[ENV_SIZE]),
                               process_id=int(os.environ[ENV_RANK]))
    sys.argv = argv
    runpy.run_path(argv[0], run_name="__main__")


def main(args: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jaxmg.launch", description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--nprocs", type=int, required=True, help="processes (one GPU each)")
    ap.add_argument("--devices", help="comma-separated GPU ordinals (default 0..n-1)")
    ap.add_argument("--grace", type=float, default=10.0,
                    help="seconds between SIGTERM and SIGKILL for the others when one fails")
    ap.add_argument("--cpu", action="store_true", help="CPU devices instead of GPUs")
    ap.add_argument("script")
    ap.add_argument("script_args", nargs=argparse.REMAINDER)
    ns = ap.parse_args(args)
    if ns.nprocs < 1:
        ap.error("-n must be at least 1")
    devices = ns.devices.split(",") if ns.devices else [str(i) for i in range(ns.nprocs)]
    if len(devices) != ns.nprocs:
        ap.error(f"--devices names {len(devices)} GPUs for {ns.nprocs} processes")
    addr = f"127.0.0.1:{_free_port()}"
    procs = []
    for rank in range(ns.nprocs):
        env = dict(os.environ, **{ENV_RANK: str(rank), ENV_SIZE: str(ns.nprocs), ENV_ADDR: addr})
        if ns.cpu:
            env["JAX_PLATFORMS"] = "cpu"
        else:
            env["CUDA_VISIBLE_DEVICES"] = devices[rank]
        cmd = [sys.executable, "-c", "import sys, jaxmg.launch as l; l._child(sys.argv[1:])",
               ns.script, *ns.script_args]
        procs.append(subprocess.Popen(cmd, env=env))
    status = 0
    failed = None
    alive = set(range(ns.nprocs))
    while alive:
        for rank in sorted(alive):
            rc = procs[rank].poll()
            if rc is None:
                continue
            alive.discard(rank)
            if rc != 0 and failed is None:
                failed, status = rank, rc
        if failed is not None and alive:
            how = (f"exited with status {status}" if status > 0
                   else f"was killed by signal {-status}")
            print(f"jaxmg.launch: process {failed} {how}; stopping the others "
                  f"({', '.join(map(str, sorted(alive)))})", file=sys.stderr)
            for rank in alive:
                procs[rank].send_signal(signal.SIGTERM)
            deadline = time.monotonic() + ns.grace
            while alive and time.monotonic() < deadline:
                alive = {r for r in alive if procs[r].poll() is None}
                time.sleep(0.05)
            for rank in alive:
                procs[rank].kill()
                procs[rank].wait()
            alive = set()
        time.sleep(0.05)
    if status < 0:  # killed by a signal: the shell's convention
        status = 128 - status
    return status


if __name__ == "__main__":
    sys.exit(main())
