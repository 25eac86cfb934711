"""trustops_files entries for a list of names: one entry per name, each field a format string whose
`{}` is the name. A loop over names would cost a module run per name; a list of entries costs one.

    files: "{{ commands | name_entries(path='/usr/local/bin/{}', src=venv ~ '/bin/{}', state='link') }}"
"""
from __future__ import annotations


def name_entries(names, **fields) -> list[dict]:
    """One mapping per name of `names`: each of `fields`, with `{}` in a text value replaced by the name."""
    if isinstance(names, str):
        names = [names]
    return [{key: value.replace("{}", str(name)) if isinstance(value, str) else value
             for key, value in fields.items()} for name in names]


class FilterModule:
    def filters(self):
        return {"name_entries": name_entries}
