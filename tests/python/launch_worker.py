"""A script for tests/python/test_launch.py, run by ``python -m jaxmg.launch --cpu``:

    launch_worker.py share OUTDIR    every process writes the bytes jaxmg's set-up exchange
                                     gave it (made by process 0) to OUTDIR/<rank>
    launch_worker.py die OUTDIR      process 1 dies at once (os._exit(3), or SIGKILL with
                                     "kill"); the others wait for bytes it would have sent
                                     (and are stopped)
"""

import os
import signal
import sys

import jax

from jaxmg._engines import cusolvermp

mode, out = sys.argv[1], sys.argv[2]
rank = jax.process_index()
assert jax.process_count() == int(os.environ["JAXMG_LAUNCH_SIZE"])
if mode == "share":
    got = cusolvermp.share("test-share", rank == 0, lambda: os.urandom(128))
    with open(os.path.join(out, str(rank)), "wb") as f:
        f.write(got)
elif mode in ("die", "kill"):
    if rank == 1:
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)  # a crash: no clean shutdown of jax.distributed
    cusolvermp.share("test-die", rank == 1, lambda: b"never")  # waits for process 1
