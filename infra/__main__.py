"""Pulumi entry point (`main: infra/` in Pulumi.yaml): everything is in infra/program.py. Pulumi runs
it with the project's virtualenv (Pulumi.yaml), where the `trustops` package is installed."""
from trustops.infra.program import main

main()
