"""accelsim.traces: the trace file format (v2; v1 still read), its writer, lazy validated
reader and recorder.

Names are resolved lazily so that `import accelsim.traces.cli` (done by the CLI at start-up)
pulls in neither numpy nor safetensors. The recorder (torch) is never imported from here:
use `accelsim.traces.recorder` explicitly.
"""

from importlib import import_module

_EXPORTS = {
    "open_trace": "accelsim.traces.reader",
    "validate_trace": "accelsim.traces.reader",
    "Trace": "accelsim.traces.reader",
    "write_trace": "accelsim.traces.writer",
    "layer_stats": "accelsim.traces.info",
    "trace_stats": "accelsim.traces.info",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'accelsim.traces' has no attribute {name!r}")
