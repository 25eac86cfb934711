"""The monitor's C hot path (monitors/_speedups.c); everything else is in pyproject.toml.
`optional`: where no compiler is found the install still works, on the pure-Python path."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("trustops.monitors._speedups", ["monitors/_speedups.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall"])])
