"""Counting JAX's compilations in tests: a program taken from JAX's caches is not traced again, whether or not the
persistent compilation cache (conftest) would have supplied its machine code, so trace events count programs built."""

import collections
import contextlib

import jax

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def count_jax_events():
    """A Counter of JAX's monitoring events (trace, lowering, backend compile) while the block runs."""
    events = collections.Counter()

    def listener(event, duration, **kwargs):
        events[event] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
