"""CrossGuard policy pack: `pulumi preview --policy-pack infra/policy`. The rules are plain
functions in rules.py (pytest runs them on the mocked program); this file only wraps them.
PolicyPack(...) serves the engine and blocks, so it lives here and is never imported.

A policy with a resource half and a stack half registers the stack half as `<name>-stack`."""
from collections.abc import Mapping, Sequence

from pulumi_policy import (
    EnforcementLevel, PolicyPack, ResourceValidationPolicy, StackValidationPolicy,
)

from trustops.infra.policy.rules import (
    RESOURCE_POLICIES, STACK_POLICIES, run_resource_policy, run_stack_policy,
)


def plain(value):
    """CrossGuard's props proxy raises on *any* unknown value read, even one a policy never needs
    (copying it would make every policy on that resource "unable to run", which does not block).
    Unwrapped to plain data with the engine's unknown markers kept: rules.py raises only when a
    policy reads one."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        target = value["__target"]
        return {k: plain(target[k]) for k in target}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, list, tuple)):
        return [plain(v) for v in value["__target"]]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _resource_policy(name, fn, control):
    def validate(args, report_violation):
        for message in run_resource_policy(fn, args.resource_type, plain(args.props)):
            report_violation(f"[{control}] {message}")
    return ResourceValidationPolicy(name=name, description=f"{control}: {fn.__doc__.strip()}", validate=validate)


def _stack_policy(name, fn, control):
    def validate(args, report_violation):
        resources = [(r.resource_type, r.name, plain(r.props)) for r in args.resources]
        for message in run_stack_policy(fn, resources):
            report_violation(f"[{control}] {message}")
    return StackValidationPolicy(name=name, description=f"{control}: {fn.__doc__.strip()}", validate=validate)


PolicyPack(
    name="trustops-security-page",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[_resource_policy(n, f, c) for n, (f, c) in RESOURCE_POLICIES.items()]
    + [_stack_policy(f"{n}-stack" if n in RESOURCE_POLICIES else n, f, c) for n, (f, c) in STACK_POLICIES.items()],
)
