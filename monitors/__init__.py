"""The security monitor (see README.md). TRUSTOPS_MONITOR_SPEEDUPS names another build of the C
hot path to load instead of the installed one: monitors/sanitize.sh runs the tests against an
AddressSanitizer + UBSan build that way."""
import os as _os

if _os.environ.get("TRUSTOPS_MONITOR_SPEEDUPS"):
    import importlib.util as _util
    import sys as _sys

    _spec = _util.spec_from_file_location(__name__ + "._speedups", _os.environ["TRUSTOPS_MONITOR_SPEEDUPS"])
    _mod = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    _sys.modules[_spec.name] = _mod
