"""`trustops seed`: generated data for dev and demos, never a copy of production (PROD-04). It
writes through the app's models with the app's own settings (the BENEFITS_* environment, as for
manage.py), so encrypted fields are sealed under that environment's keys, and it only fills an
empty database: it never mixes with data that came from anywhere else.

Names, IBANs and national ids come from Faker under a random key: valid (check digits and all),
different on every run, and about nobody. Accounts get no usable password (set one with
`manage.py changepassword <username>`); receipts are placeholder images in the environment's bucket.
"""
from __future__ import annotations

import datetime as dt
import os
import secrets
from decimal import Decimal

from trustops.anonymise import Fakes
from trustops.lab.system import Progress
from trustops.staging import StagingError, app_models

NEEDED = ("BENEFITS_SECRET_KEY", "BENEFITS_DB_HOST", "BENEFITS_DB_PASSWORD")
NATIONAL_LOCALES = ("fi_FI", "sv_SE", "nl_NL")     # national ids with check digits Faker makes valid


def seed(companies: int = 2, employees: int = 6, expenses: int = 3, progress: Progress | None = None) -> dict:
    progress = progress or Progress()
    missing = [n for n in NEEDED if not os.environ.get(n)]
    if missing:
        raise StagingError(f"{', '.join(missing)} not set: seed writes through the app, with the environment "
                           "manage.py uses")
    app_models()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import transaction
    from faker import Faker

    from core import receipts
    from core.models import Company, Employee, ExpenseReport
    if Employee.objects.exists():
        raise StagingError("the database already holds employees: seed fills an empty dev database only "
                           "(it never mixes with data from elsewhere)")
    fakes = Fakes(secrets.token_bytes(32))
    rng = Faker()
    rng.seed_instance(int.from_bytes(secrets.token_bytes(8), "big"))
    made = {"companies": 0, "employees": 0, "expenses": 0}
    with transaction.atomic():
        for c in range(companies):
            company = Company.objects.create(name=fakes.fake("company", f"seed-company-{c}"))
            made["companies"] += 1
            for e in range(employees):
                locale = Faker(NATIONAL_LOCALES[(c + e) % len(NATIONAL_LOCALES)])
                locale.seed_instance(rng.random_int(0, 2**31))
                first, last = locale.first_name(), locale.last_name()
                user = User(username=fakes.fake("username", f"seed-user-{c}-{e}"),
                            email=fakes.fake("email", f"seed-user-{c}-{e}"), first_name=first, last_name=last)
                user.set_unusable_password()
                user.save()
                role = Employee.HR if e == 0 else Employee.EMPLOYEE
                emp = Employee.objects.create(user=user, company=company, role=role, full_name=f"{first} {last}",
                                              bank_account=locale.iban(), national_id=locale.ssn())
                made["employees"] += 1
                if not settings.RECEIPTS_BUCKET:
                    continue
                for n in range(expenses if role == Employee.EMPLOYEE else 0):
                    image = fakes.placeholder(f"seed-receipt-{c}-{e}-{n}")
                    ExpenseReport.objects.create(
                        employee=emp, amount=Decimal(rng.random_int(1500, 20000)) / 100, currency=company.currency,
                        spent_on=dt.date.today() - dt.timedelta(days=rng.random_int(1, 90)),
                        category=rng.random_element([k for k, _ in ExpenseReport.CATEGORIES]),
                        receipt_key=receipts.put(company.pk, image, "image/png"), receipt_type="image/png",
                        receipt_sha256=receipts.sha256(image))
                    made["expenses"] += 1
            progress.step(f"seeded {company.name}: {employees} people")
    if not settings.RECEIPTS_BUCKET:
        progress.step("no receipts bucket (BENEFITS_RECEIPTS_BUCKET): seeded no expenses")
    return made
