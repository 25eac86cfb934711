"""CrossGuard policy pack: `pulumi preview --policy-pack infra/policy`. The rules are plain
functions in rules.py (pytest runs them on the mocked program); this file only wraps them.
PolicyPack(...) serves the engine and blocks, so it lives here and is never imported.

A policy with a resource half and a stack half registers the stack half as `<name>-stack`."""
from pulumi_policy import (
    EnforcementLevel, PolicyPack, ResourceValidationPolicy, StackValidationPolicy,
)

from trustops.infra.policy.rules import (
    RESOURCE_POLICIES, STACK_POLICIES, run_resource_policy, run_stack_policy,
)


def _resource_policy(name, fn, control):
    def validate(args, report_violation):
        for message in run_resource_policy(fn, args.resource_type, args.props):
            report_violation(f"[{control}] {message}")
    return ResourceValidationPolicy(name=name, description=f"{control}: {fn.__doc__.strip()}", validate=validate)


def _stack_policy(name, fn, control):
    def validate(args, report_violation):
        resources = [(r.resource_type, r.name, r.props) for r in args.resources]
        for message in run_stack_policy(fn, resources):
            report_violation(f"[{control}] {message}")
    return StackValidationPolicy(name=name, description=f"{control}: {fn.__doc__.strip()}", validate=validate)


PolicyPack(
    name="trustops-security-page",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[_resource_policy(n, f, c) for n, (f, c) in RESOURCE_POLICIES.items()]
    + [_stack_policy(f"{n}-stack" if n in RESOURCE_POLICIES else n, f, c) for n, (f, c) in STACK_POLICIES.items()],
)
