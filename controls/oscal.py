"""OSCAL export, written with compliance-trestle's pydantic models (the library compliance teams
use): a catalog of the page's controls, grouped by area, and assessment results in which every
check's newest evidence is an observation and every control a finding. Identifiers are derived
(uuid5), so the catalog is the same document from one report to the next."""
from __future__ import annotations

import datetime as dt
import re
import uuid

from trestle.oscal import OSCAL_VERSION
from trestle.oscal import assessment_results as ar
from trestle.oscal import catalog as cat
from trestle.oscal import common

from trustops.controls import describe
from trustops.controls.engine import ControlStatus

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://trustops.invalid/controls")
CATALOG_FILE = "oscal-catalog.json"
RESULTS_FILE = "oscal-assessment-results.json"
# Methods by check kind: EXAMINE a document or the code, TEST the running system or its tests.
METHODS = {"manual": "EXAMINE", "file": "EXAMINE", "code": "EXAMINE"}


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def _id(text: str) -> str:
    """An OSCAL token (a letter or _ first, then letters, digits, . - _): any area or control name fits."""
    token = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return token if token[:1].isalpha() else f"_{token}"


def _metadata(title: str, generated: dt.datetime) -> common.Metadata:
    return common.Metadata(title=title, last_modified=generated, version=generated.strftime("%Y%m%d.%H%M%S"),
                           oscal_version=OSCAL_VERSION)


def catalog(statuses: list[ControlStatus], generated: dt.datetime) -> cat.Catalog:
    groups: dict[str, list[cat.Control]] = {}
    for s in statuses:
        c = s.control
        parts = [common.Part(id=f"{_id(c.id)}_smt", name="statement", prose=c.statement)]
        if c.gaps:
            parts.append(common.Part(id=f"{_id(c.id)}_gap", name="guidance",
                                     prose=f"Not proven by any automated check yet: {c.gaps}"))
        groups.setdefault(c.area, []).append(cat.Control(
            id=_id(c.id), title=c.statement[:120].replace("\n", " "),
            props=[common.Property(name="label", value=c.id),
                   common.Property(name="page-status", value=c.page_status, ns="https://trustops.invalid/ns"),
                   common.Property(name="refresh", value=c.refresh, ns="https://trustops.invalid/ns")],
            parts=parts))
    return cat.Catalog(uuid=_uuid("catalog"), metadata=_metadata("Security page controls", generated),
                       groups=[cat.Group2(id=_id(area), title=area, controls=controls)
                               for area, controls in groups.items()])


def assessment_results(statuses: list[ControlStatus], generated: dt.datetime, chain_head: str | None
                       ) -> ar.AssessmentResults:
    observations: dict[str, common.Observation] = {}
    findings = []
    for s in statuses:
        related = []
        for check, ev, state in s.evidence:
            if ev is None:
                continue
            oid = _uuid("observation", check.key, ev.started)
            related.append(common.RelatedObservation(observation_uuid=oid))
            observations.setdefault(oid, common.Observation(
                uuid=oid, title=check.key[:200], description=describe.how(check),
                methods=[METHODS.get(check.kind, "TEST")], collected=ev.started_at,
                props=[common.Property(name="result", value=ev.result, ns="https://trustops.invalid/ns")],
                # the check's own summary and command line stay in the internal report (hosts, paths)
                relevant_evidence=[common.RelevantEvidence(
                    description=f"{describe.STATE_WORDS[state]} (output sha256 {ev.output_sha256})")],
                remarks=f"state at report time: {describe.STATE_WORDS[state]}"))
        # satisfied only on passing automated evidence: a reviewed document ("Documented" on the
        # page) is a person's word that no check here confirms, so it is not-satisfied, reason other
        satisfied = s.status == "passing"
        findings.append(common.Finding(
            uuid=_uuid("finding", s.control.id, generated.isoformat()), title=f"{s.control.id}: {s.status}",
            description=s.public_reason,
            # the finding is about the control's statement: the catalog's `<id>_smt` part
            target=common.FindingTarget(
                type="statement-id", target_id=f"{_id(s.control.id)}_smt",
                status=common.ObjectiveStatus(state="satisfied" if satisfied else "not-satisfied",
                                              reason="pass" if satisfied else "fail" if s.status == "failing"
                                              else "other",
                                              remarks=describe.label(s))),
            related_observations=related or None))
    collected = [o.collected for o in observations.values()]
    result = ar.Result(
        uuid=_uuid("result", generated.isoformat()), title="Automated evidence for the security page",
        description="Each control's status computed from the newest stored evidence of its checks.",
        start=min(collected) if collected else generated, end=generated,
        props=[common.Property(name="evidence-chain-head", value=chain_head or "broken",
                               ns="https://trustops.invalid/ns")],
        reviewed_controls=common.ReviewedControls(control_selections=[common.ControlSelections(
            include_controls=[common.SelectControlById(control_id=_id(s.control.id)) for s in statuses])]),
        observations=list(observations.values()) or None, findings=findings or None)
    return ar.AssessmentResults(
        uuid=_uuid("assessment-results"), metadata=_metadata("Security page: assessment results", generated),
        import_ap=ar.ImportAp(href=f"./{CATALOG_FILE}",
                              remarks="No separate assessment plan: the plan is the catalog's checks, run by "
                                      "trustops controls check."),
        results=[result])


def to_json(model) -> str:
    return model.oscal_serialize_json(pretty=True) + "\n"
