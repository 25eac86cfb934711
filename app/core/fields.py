"""EncryptedTextField: a text column sealed with AES-GCM (benefits/crypto.py) before it reaches the
database; the model label and field name are the associated data."""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.db import models

from benefits.crypto import FieldCipher, FileKeyProvider, KeyVaultKeyProvider


@lru_cache(maxsize=1)
def cipher() -> FieldCipher:
    cfg = settings.FIELD_KEYS
    if cfg["provider"] == "keyvault":
        return FieldCipher(KeyVaultKeyProvider(cfg["vault_url"]))
    return FieldCipher(FileKeyProvider(cfg["dir"]))


class EncryptedTextField(models.TextField):
    def contribute_to_class(self, cls, name, *args, **kwargs):
        super().contribute_to_class(cls, name, *args, **kwargs)
        self.context = f"{cls._meta.label}.{name}"

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return cipher().decrypt(value, self.context)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return cipher().encrypt(value, self.context)
