"""A role's files in one task: templates rendered and role files read on the control node, then one
run of the trustops_files module (library/) on the host for all of them.

    - name: Monitor config and service
      trustops_files:
        owner: root            # defaults for the entries that do not say
        group: root
        files:
          - path: /etc/trustops/monitor.yml
            template: monitor.yml.j2     # this role's templates/, rendered as the template module does
            mode: "0640"
          - path: /etc/systemd/system/trustops-monitor.service
            src: trustops-monitor.service  # this role's files/ (or a path on the control node)
            mode: "0644"
          - path: /etc/issue
            content: "{{ banner }}"
            mode: "0644"
          - path: /etc/trustops/old.conf
            state: absent
      notify: Restart monitor

One task per handler: the task changes when any entry does (`changed_paths` says which). Why one
task and not a task per file: see the module's docstring.
"""
from __future__ import annotations

import base64
import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from ansible._internal._templating import _template_vars

ENTRY_KEYS = {"path", "state", "content", "template", "src", "mode", "owner", "group", "validate"}
SOURCES = ("content", "template", "src")
DEFAULT_KEYS = ("owner", "group")


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("files", *DEFAULT_KEYS))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        files = self._task.args.get("files")
        if not isinstance(files, list) or not files:
            raise AnsibleActionFail("trustops_files: files must be a non-empty list of entries")
        defaults = {k: self._task.args[k] for k in DEFAULT_KEYS if self._task.args.get(k) is not None}
        contents = []   # apart from the entries: the module's no_log option (a key is never logged)
        entries = [self._entry(index, entry, defaults, task_vars, contents) for index, entry in enumerate(files)]
        result.update(self._execute_module(module_name="trustops_files",
                                           module_args={"files": entries, "contents": contents},
                                           task_vars=task_vars))
        return result

    def _entry(self, index, entry, defaults, task_vars, contents):
        """The module's form of one entry: its content read or rendered here, base64."""
        if not isinstance(entry, dict):
            raise AnsibleActionFail(f"trustops_files: entry {index} is not a mapping")
        path = entry.get("path")
        name = path if isinstance(path, str) and path else f"entry {index}"
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            raise AnsibleActionFail(f"trustops_files: {name}: unknown keys {', '.join(unknown)}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise AnsibleActionFail(f"trustops_files: {name}: path must be an absolute path")
        mode = entry.get("mode")
        if mode is not None and not isinstance(mode, str):
            raise AnsibleActionFail(f"trustops_files: {path}: mode {mode!r} must be a quoted octal string like '0644' "
                                    "(unquoted, YAML reads 0644 as the number 420)")
        state = entry.get("state", "file")
        sources = [k for k in SOURCES if entry.get(k) is not None]
        out = {**defaults, **{k: v for k, v in entry.items() if k not in SOURCES and v is not None}}
        if state == "file":
            if len(sources) != 1:
                raise AnsibleActionFail(f"trustops_files: {path}: a file needs exactly one of content, template, src")
            out["content"] = len(contents)
            contents.append(base64.b64encode(self._content(path, sources[0], entry[sources[0]], task_vars)).decode())
        elif state == "link":
            if sources != ["src"]:
                raise AnsibleActionFail(f"trustops_files: {path}: a link needs src (its target) and nothing else")
            out["src"] = entry["src"]
        elif sources:
            raise AnsibleActionFail(f"trustops_files: {path}: state {state} takes no {sources[0]}")
        return out

    def _content(self, path, kind, value, task_vars):
        if kind == "content":
            if not isinstance(value, str):
                raise AnsibleActionFail(f"trustops_files: {path}: content must be text, not {type(value).__name__}")
            return to_bytes(value, errors="surrogate_or_strict")
        try:
            source = self._find_needle("templates" if kind == "template" else "files", value)
        except AnsibleError as e:
            raise AnsibleActionFail(f"trustops_files: {path}: {e}") from None
        if kind == "src":
            with open(source, "rb") as f:
                return f.read()
        return to_bytes(self._render(source, value, path, task_vars), errors="surrogate_or_strict")

    def _render(self, source, name, dest, task_vars):
        """As ansible.builtin.template renders (its defaults: trim_blocks, newline \\n, the template
        variables, includes found beside the template), so a role moving to this action changes
        no byte on a host."""
        searchpath = list(task_vars.get("ansible_search_path", [])) + [self._loader._basedir, os.path.dirname(source)]
        searchpath = [p for base in searchpath for p in (os.path.join(base, "templates"), base)]
        variables = task_vars.copy()
        variables.update(_template_vars.generate_ansible_template_vars(
            path=name, fullpath=source, dest_path=dest, include_ansible_managed="ansible_managed" not in variables))
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=variables)
        rendered = templar.template(trust_as_template(self._loader.get_text_file_contents(source)),
                                    escape_backslashes=False, overrides={"trim_blocks": True, "lstrip_blocks": False,
                                                                         "newline_sequence": "\n"})
        return "" if rendered is None else rendered
