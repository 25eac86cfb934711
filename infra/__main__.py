"""Pulumi entry point (`main: infra/` in Pulumi.yaml): everything is in infra/program.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from infra.program import main  # noqa: E402

main()
