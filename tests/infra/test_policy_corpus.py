"""The policy pack against its bypass classes: a corpus of non-compliant variants
(tests/infra/noncompliant.py), each caught by exactly the policy named for it, both on `up` and at
the preview of a new stack (values computed by providers unknown), near misses that must pass, and
the compliant stacks passing at preview with every value the policies read known."""
from __future__ import annotations

import pytest

from tests.infra import noncompliant
from trustops import mockrun as harness
from trustops.infra.policy import rules

STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="module", params=[False, True], ids=["up", "preview"])
def corpus(request):
    resources, _ = harness.run("dev", program=noncompliant.main, preview=request.param)
    return request.param, harness.as_policy_resources(resources)


def _group(resources, vid):
    return [r for r in resources if r[1].startswith(vid + "-")]


def _fired(resources, preview: bool) -> set[str]:
    if preview:   # at preview, a policy that cannot decide would not block: none may be undecided
        _, undecided = rules.evaluate_all(resources)
        assert {k: v for k, v in undecided.items() if v} == {}, "a policy that cannot decide does not block"
    return {k for k, v in rules.evaluate(resources).items() if v}


@pytest.mark.parametrize("vid", list(noncompliant.VARIANTS))
def test_each_variant_is_caught_by_exactly_its_policy(corpus, vid):
    preview, resources = corpus
    expected, _ = noncompliant.VARIANTS[vid]
    group = _group(resources, vid)
    assert group, f"variant {vid} declared nothing"
    assert _fired(group, preview) == {expected}


@pytest.mark.parametrize("vid", list(noncompliant.COMPLIANT))
def test_near_misses_pass(corpus, vid):
    preview, resources = corpus
    assert _fired(_group(resources, vid), preview) == set()


def test_the_corpus_is_large_and_every_policy_has_variants():
    policies = set(rules.evaluate([]))
    named = {policy for policy, _ in noncompliant.VARIANTS.values()}
    assert len(noncompliant.VARIANTS) >= 20
    assert named == policies, f"policies without a variant: {policies - named}"


@pytest.mark.parametrize("stack", STACKS)
def test_compliant_stacks_pass_at_preview_with_every_value_known(stack, stack_run):
    resources, _ = stack_run(stack, preview=True)
    found, undecided = rules.evaluate_all(harness.as_policy_resources(resources))
    assert {k: v for k, v in undecided.items() if v} == {}, "these checks could not block a preview"
    assert {k: v for k, v in found.items() if v} == {}


def test_an_unknown_value_is_undecided_not_a_pass():
    class Unknown:   # what the mocks (and, as sentinels, CrossGuard) hand a policy at preview
        pass

    policy = {"bucket": "b", "policy": Unknown()}
    found, undecided = rules.evaluate_all([("aws:s3/bucketPolicy:BucketPolicy", "p", policy)])
    assert undecided["s3-tls-only"] and not found["s3-tls-only"]
    assert rules.evaluate([("aws:s3/bucketPolicy:BucketPolicy", "p", policy)])["s3-tls-only"]


@pytest.mark.parametrize("sources,open_", [
    (["0.0.0.0/1", "128.0.0.0/1"], True), (["::/0"], True), (["8000::/1", "::/1"], True),
    (["Internet"], True), (["*"], True), (["Any"], True), (["AzureCloud"], True), (["Storage.WestEurope"], True),
    ([f"{n}.0.0.0/8" for n in (20, 40)], True), (["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], False),
    (["VirtualNetwork", "AzureLoadBalancer"], False), (["20.50.60.0/28"], False), (["2a01:111:f400::/48"], False),
    (["2a01:111::/32"], True),
])
def test_internet_exposure_however_the_sources_are_spelled(sources, open_):
    assert (rules.internet_exposure(sources) is not None) == open_
