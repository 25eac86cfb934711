"""The monitor's C hot path (monitors/_speedups.c); everything else is in pyproject.toml.
`optional`: where no compiler is found the install still works, on the pure-Python path.
TRUSTOPS_BUILD_PURE=1 leaves it out (trustops.package builds that wheel for hosts it does not fit)."""
import os

from setuptools import Extension, setup

setup(ext_modules=[] if os.environ.get("TRUSTOPS_BUILD_PURE") else [
    Extension("trustops.monitors._speedups", ["monitors/_speedups.c"], optional=True,
              extra_compile_args=["-O2", "-Wall"])])
