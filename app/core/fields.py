"""Encrypted model fields (AES-256-GCM, benefits/crypto.py), keys from Key Vault or a key file
directory. The associated data is the model label, the field name and the row's identity (the
model's ENCRYPTION_ROW_KEY attribute, a value fixed before the first save), so a ciphertext moved
to another column or row does not decrypt.

Values are decrypted when read, not when loaded: a row sealed under a missing key version fails
where its field is used, and only there (a page listing names still renders). A value never read
is saved back as it was stored."""
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


class Sealed(str):
    """A stored ciphertext, as read from the database and not decrypted yet."""


class UndecryptableField(ValueError):
    """This row's value cannot be decrypted (missing key version, or moved from elsewhere)."""


class _Decrypting:
    def __init__(self, field: "EncryptedTextField") -> None:
        self.field = field

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__.get(self.field.attname)
        if isinstance(value, Sealed):
            try:
                value = cipher().decrypt(value, self.field.context_for(instance))
            except Exception as exc:  # noqa: BLE001 - any failure is this row's failure, named
                raise UndecryptableField(f"{self.field.context} of row {instance.pk} does not decrypt: "
                                         f"{type(exc).__name__}: {exc}") from exc
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance, value) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    def contribute_to_class(self, cls, name, *args, **kwargs):
        super().contribute_to_class(cls, name, *args, **kwargs)
        self.context = f"{cls._meta.label}.{name}"
        setattr(cls, self.attname, _Decrypting(self))

    def context_for(self, instance) -> str:
        row = getattr(instance, getattr(type(instance), "ENCRYPTION_ROW_KEY", "pk"))
        if row in (None, ""):
            raise ValueError(f"{self.context}: the row key is not set before saving")
        return f"{self.context}:{row}"

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return Sealed(value)

    def pre_save(self, model_instance, add):
        value = model_instance.__dict__.get(self.attname)
        if value in (None, "") or isinstance(value, Sealed):
            return value
        return Sealed(cipher().encrypt(str(value), self.context_for(model_instance)))

    def get_prep_value(self, value):
        if value in (None, "") or isinstance(value, Sealed):
            return None if value is None else str(value)
        raise ValueError(f"{self.context} is encrypted per row: set it on an instance and save(); "
                         "it cannot be queried or bulk-updated by value")
