"""One traced call placed several times in one program: each instance meets its own.

A call-site id is fixed when a call is traced, and JAX puts one traced program into an outer
program as often as it is used: a cached ``jax.jit`` (every op's ``_program``) called twice
with the same shapes, ``custom_linear_solve`` reusing its solve for the tangent and
transposed solves. The compiled program then holds several jaxmg custom calls with the same
``site`` attribute. XLA's CPU runtime runs independent parts of a program concurrently: once
more than 8 thunks are ready, its executor hands part of the ready queue to other worker
threads, so the devices of one execution reach those calls in different orders. Matching
"the k-th execution of a site" alone then pairs different instances on different devices
(wrong results, or a wait until the timeout); the rendezvous also keys on the instance
(docs/design.md, "Rendezvous").

Before the instance key, ``test_instances_of_one_site_meet_their_own`` gave wrong inverses in
about half of the rounds with 2 devices and 4 rounds in 5 with 4 devices (jax 0.10.2, 2 cores).
"""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import _ffi

ROWS = P("x", None)
# Independent calls: more than the CPU thunk executor's split threshold (8 ready thunks), so
# that every device spreads them over several worker threads.
INSTANCES = 12
ROUNDS = 25


@pytest.fixture
def short_timeout():
    """A crossed or missing partner shows up as a timeout within seconds, not minutes."""
    jaxmg.set_timeout(2.0)
    yield
    jaxmg.set_timeout(None)


def _sites(compiled_text: str) -> list[int]:
    """The ``site`` attribute of every jaxmg custom call of a compiled program."""
    calls = re.findall(r'custom_call_target="jaxmg_\w+"[^\n]*', compiled_text)
    return [int(re.search(r"site = (\d+)", c).group(1)) for c in calls]


def _hpd(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n))
    return x @ x.T / n + (1.0 + seed) * np.eye(n)


@pytest.mark.parametrize("ndev", [2, 4])
def test_instances_of_one_site_meet_their_own(mesh_of, ndev, short_timeout):
    """12 inverses of different matrices in one jitted program, all through the same traced
    call (same site id): every one equals NumPy's, in every one of 25 executions."""
    mesh = mesh_of(list(range(ndev)))
    n = 8 * ndev
    kw = dict(mesh=mesh, in_specs=(ROWS,), return_status=True, T_A=4)
    prog = jax.jit(lambda mats: [jaxmg.potri(m, **kw) for m in mats])

    mats = [_hpd(n, seed) for seed in range(INSTANCES)]
    want = [np.linalg.inv(m) for m in mats]
    args = [jax.device_put(m, NamedSharding(mesh, ROWS)) for m in mats]

    given = _ffi.instance_count()
    sites = _sites(prog.lower(args).compile().as_text())
    assert len(sites) == INSTANCES and len(set(sites)) == 1, sites  # the hazard is present
    # XLA instantiated every one of them (one instance each, shared by all devices).
    assert _ffi.instance_count() - given >= INSTANCES

    live = _ffi.live_sessions()  # tombstones of earlier tests may still be there
    for r in range(ROUNDS):
        outs = jax.block_until_ready(prog(args))
        for i, ((inv, info), w) in enumerate(zip(outs, want)):
            assert int(info) == 0, (r, i, int(info))
            np.testing.assert_allclose(np.asarray(inv), w, rtol=1e-9, atol=1e-9,
                                       err_msg=f"round {r}, instance {i}")
    assert _ffi.live_sessions() <= live


def test_loop_instances_of_one_site(mesh_of, short_timeout):
    """Several vmapped (looped) instances of one site: within each instance the k-th
    execution still meets the k-th execution of the other devices."""
    mesh = mesh_of([1, 3])
    n, batch = 16, 3
    kw = dict(mesh=mesh, in_specs=(ROWS,), return_status=True, T_A=4)
    prog = jax.jit(lambda stacks: [jax.vmap(lambda m: jaxmg.potri(m, **kw))(s) for s in stacks])

    stacks = [np.stack([_hpd(n, 3 * i + k) for k in range(batch)]) for i in range(4)]
    args = [jax.device_put(s, NamedSharding(mesh, P(None, "x", None))) for s in stacks]
    sites = _sites(prog.lower(args).compile().as_text())
    assert len(sites) == 4 and len(set(sites)) == 1, sites

    for _ in range(5):
        outs = jax.block_until_ready(prog(args))
        for (inv, info), s in zip(outs, stacks):
            assert np.all(np.asarray(info) == 0)
            np.testing.assert_allclose(np.asarray(inv), np.linalg.inv(s), rtol=1e-9, atol=1e-9)
