"""FFI helper file for tests/test_ffi.py that fails to load."""

raise RuntimeError("broken helper file")
