"""Companies, their employees (with HR and admin roles), and the audit trail. Every field that
holds personal data is listed in ropa.yaml; tests fail on a field that is not."""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

from core.fields import EncryptedTextField


class Company(models.Model):
    name = models.CharField(max_length=200)
    # AI features are optional and off until the company turns them on (AI-01, AI-02)
    ai_receipt_scanning = models.BooleanField(default=False)
    ai_expense_evaluation = models.BooleanField(default=False)
    # The company's own expense policy, which the AI evaluation reads (AI-02). Company text, written
    # by its admins on the AI settings page; it must not name employees (the page says so).
    ai_policy = models.TextField(blank=True, default="")
    # The AI approves on its own only claims in the company's currency up to this amount (AI-02);
    # anything above goes to HR whatever the model says.
    currency = models.CharField(max_length=3, default="EUR")
    ai_auto_approve_cap = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("150.00"))

    def __str__(self) -> str:
        return self.name


class Employee(models.Model):
    EMPLOYEE, HR, ADMIN = "employee", "hr", "admin"
    ROLES = [(EMPLOYEE, "Employee"), (HR, "HR staff"), (ADMIN, "Administrator")]

    ENCRYPTION_ROW_KEY = "user_id"      # bound into the encrypted fields (core/fields.py): fixed, set before saving

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="employee")
    company = models.ForeignKey(Company, on_delete=models.PROTECT, related_name="employees")
    role = models.CharField(max_length=16, choices=ROLES, default=EMPLOYEE)
    full_name = models.CharField(max_length=200)
    bank_account = EncryptedTextField(blank=True, default="")
    national_id = EncryptedTextField(blank=True, default="")
    anonymized_at = models.DateTimeField(null=True, blank=True)
    # Entra ID identity (AUTH-02): the immutable object id within the company's tenant, set when HR
    # provisions the account; sign-in matches on these, never on the e-mail address (which changes).
    entra_tid = models.CharField(max_length=64, blank=True, default="")
    entra_oid = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entra_tid", "entra_oid"], name="one_account_per_entra_object",
                                               condition=~models.Q(entra_oid=""))]

    @property
    def is_staff_role(self) -> bool:
        return self.role in (self.HR, self.ADMIN)

    def __str__(self) -> str:
        return self.full_name


class CompanyFile(models.Model):
    """A company policy document (PDF or DOCX) the AI evaluation may read (AI-02): the file in S3
    (SSE-S3), its text extracted at upload. Company data, like ai_policy: who uploaded it is in the
    audit trail, not here."""
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=200)        # the admin's file name, shown back to admins
    kind = models.CharField(max_length=4)          # pdf | docx, found from the bytes
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    s3_key = models.CharField(max_length=200)
    text = models.TextField()                      # what the AI reads, capped (core/company_files.py)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["company", "sha256"], name="company_file_once")]


class AuditEvent(models.Model):
    """Security-relevant actions: logins, MFA changes, decisions, exports, deletions."""
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    company = models.ForeignKey(Company, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]


def audit(request, action: str, target: str = "", **detail) -> AuditEvent:
    user = request.user if request.user.is_authenticated else None
    company = getattr(getattr(user, "employee", None), "company", None) if user else None
    return AuditEvent.objects.create(actor=user, company=company, action=action, target=target, detail=detail)


class ExpenseReport(models.Model):
    """A wellness expense with its receipt (in S3, SSE-S3). Decisions are HR's, or the AI's when
    the company enabled it and the model is at least 85 % confident; HR can revert any of them."""
    CATEGORIES = [("gym", "Gym and fitness"), ("sports", "Sports equipment"),
                  ("physio", "Massage and physiotherapy"), ("mental", "Mental health")]
    SUBMITTED, NEEDS_REVIEW, APPROVED, DECLINED = "submitted", "needs_review", "approved", "declined"
    STATUSES = [(SUBMITTED, "Submitted"), (NEEDS_REVIEW, "Needs human review"), (APPROVED, "Approved"),
                (DECLINED, "Declined")]

    employee = models.ForeignKey(Employee, on_delete=models.PROTECT, related_name="expenses")
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    spent_on = models.DateField()
    category = models.CharField(max_length=16, choices=CATEGORIES)
    receipt_key = models.CharField(max_length=300)
    receipt_type = models.CharField(max_length=32, default="application/octet-stream")   # from its signature
    receipt_sha256 = models.CharField(max_length=64, blank=True, default="", db_index=True)   # duplicates
    status = models.CharField(max_length=16, choices=STATUSES, default=SUBMITTED)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_source = models.CharField(max_length=8, blank=True, default="")   # human | ai
    ai_confidence = models.FloatField(null=True, blank=True)
    ai_reasoning = models.TextField(blank=True, default="")
    ai_scan = models.JSONField(default=dict, blank=True)   # vendor, date, total, VAT read from the receipt
    review_reason = models.CharField(max_length=300, blank=True, default="")   # why a human must decide
    created_at = models.DateTimeField(auto_now_add=True)


class Notification(models.Model):
    employee = models.ForeignKey(Employee, on_delete=models.CASCADE, related_name="notifications")
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)
    read = models.BooleanField(default=False)


class DataSubjectRequest(models.Model):
    """A request under GDPR Arts. 15-20, answered within 30 days of receipt (DSR-01)."""
    ACCESS, CORRECTION, DELETION, PORTABILITY = "access", "correction", "deletion", "portability"
    KINDS = [(ACCESS, "Access"), (CORRECTION, "Correction"), (DELETION, "Deletion"), (PORTABILITY, "Portability")]
    OPEN, DONE, REFUSED = "open", "done", "refused"
    DEADLINE_DAYS = 30

    employee = models.ForeignKey(Employee, on_delete=models.PROTECT, related_name="requests")
    kind = models.CharField(max_length=16, choices=KINDS)
    details = models.TextField(blank=True, default="")
    status = models.CharField(max_length=8, default=OPEN)
    received_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    resolution = models.TextField(blank=True, default="")

    @property
    def due_at(self):
        import datetime as dt
        return self.received_at + dt.timedelta(days=self.DEADLINE_DAYS)
