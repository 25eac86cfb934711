#!/usr/bin/python
"""A role's files on a host in one module run: each entry a file with its content, a directory, a
symlink or an absence, with its mode and owner.

Why: a converge with nothing to change spends its time per task, not per file (a worker forked,
its connection looked up, the module's arguments templated: 0.19 s a task on four hosts, 0.1 s a
loop item). The roles used a task per file; the action of the same name (action_plugins/) renders
their templates on the control node and sends them all here at once.

Content replaces a file atomically (a temporary file in the same directory, its mode and owner set
before the rename), so a converge killed mid-way leaves the old file or the new one, never half of
one, and a symlink at the path is replaced, not written through.
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: trustops_files
short_description: Files, directories, symlinks and absences on a host, in one module run
description:
  - Used through the action plugin of the same name, which renders templates and reads role files
    on the control node and sends their content here base64-encoded.
  - Entries are applied in order, so a directory entry before a file entry creates its directory.
options:
  files:
    description: Entries with path, state (file, directory, link, absent), content (a file: the index
      of its content in contents), src (link target), mode (octal string), owner, group, validate
      (a command with %s).
    type: list
    elements: dict
    required: true
  contents:
    description: The files' contents, base64. no_log, so a key's content is neither logged on the
      host (AnsibleModule logs a module's arguments to the journal) nor shown at -vvv.
    type: list
    elements: str
    default: []
"""

RETURN = r"""
changed_paths:
  description: The entries' paths this run changed (or would change, in check mode), in order.
  type: list
  elements: str
"""

import base64
import glob
import grp
import os
import pwd
import re
import shlex
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

STATES = ("file", "directory", "link", "absent")
MODE = re.compile(r"^0?[0-7]{3,4}$")
DIFF_LIMIT = 64 * 1024  # bytes: larger content is reported as changed, without its text


class EntryError(Exception):
    """One entry cannot be applied: the message names its path and what is wrong."""


def _id(name, lookup, what):
    """A user's or group's number: given as a number, or looked up by name (pwd.getpwnam, grp.getgrnam)."""
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    try:
        return lookup(name)[2]
    except KeyError:
        raise EntryError(f"no {what} {name!r} on this host") from None


def _wanted_attrs(entry):
    """(mode, uid, gid) the entry asks for, None where it leaves the host's as they are."""
    mode = entry.get("mode")
    if mode is not None:
        if not isinstance(mode, str) or not MODE.match(mode):
            raise EntryError(f"mode {mode!r} is not an octal string like '0644'")
        mode = int(mode, 8)
    uid = _id(entry["owner"], pwd.getpwnam, "user") if entry.get("owner") not in (None, "") else None
    gid = _id(entry["group"], grp.getgrnam, "group") if entry.get("group") not in (None, "") else None
    return mode, uid, gid


def _attrs_differ(st, mode, uid, gid):
    return ((mode is not None and stat.S_IMODE(st.st_mode) != mode)
            or (uid is not None and st.st_uid != uid)
            or (gid is not None and st.st_gid != gid))


def _ids(uid, gid):
    """chown's arguments: -1 leaves the owner or group as it is."""
    return (-1 if uid is None else uid, -1 if gid is None else gid)


def _set_attrs_fd(fd, mode, uid, gid):
    os.fchown(fd, *_ids(uid, gid))
    if mode is not None:
        os.fchmod(fd, mode)  # after chown: chown clears setuid/setgid bits


def _set_attrs(path, mode, uid, gid):
    """Mode and owner of the file or directory at `path` itself: opened without following a symlink,
    so one swapped in after the lstat (by a service account owning the directory) fails here
    instead of handing root's chmod another file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        _set_attrs_fd(fd, mode, uid, gid)
    finally:
        os.close(fd)


def _fix_attrs(path, st, mode, uid, gid, check):
    """Mode and owner of an existing path as wanted; True if they were not (and are now, unless checking)."""
    if not _attrs_differ(st, mode, uid, gid):
        return False
    if not check:
        _set_attrs(path, mode, uid, gid)
    return True


def _read(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _text(which, data, *modes):
    """The diff's text of content, unless it is large, binary or not for everyone's eyes (a key, a
    password file: a mode, old or new, without read for others; `--diff` output lands in CI logs)."""
    if any(mode is not None and not mode & stat.S_IROTH for mode in modes):
        return f"({which} content, {len(data)} bytes: not shown, not world-readable)\n"
    if len(data) > DIFF_LIMIT:
        return f"({len(data)} bytes)\n"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"(binary, {len(data)} bytes)\n"


def _validate(module, command, data, path):
    """Run the entry's check on the new content in a temporary file beside the path; fail if it fails."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.trustops-validate-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if "%s" not in command:
            raise EntryError(f"validate {command!r} has no %s for the file")
        rc, out, err = module.run_command(command.replace("%s", shlex.quote(tmp)))
        if rc != 0:
            said = (err or out).strip().splitlines()
            raise EntryError(f"validate {command!r} refused the new content (exit {rc}): "
                             f"{said[-1] if said else 'no output'}")
    finally:
        os.unlink(tmp)


def _write(path, data, mode, uid, gid, st):
    """Replace `path` with `data` atomically, the new file's mode and owner those wanted, else the old
    file's, else root's 0644 less the umask."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.trustops-")
    try:
        keep = st if st is not None and stat.S_ISREG(st.st_mode) else None
        if mode is None:
            if keep is not None:
                mode = stat.S_IMODE(keep.st_mode)
            else:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o644 & ~umask
        if keep is not None:
            uid = keep.st_uid if uid is None else uid
            gid = keep.st_gid if gid is None else gid
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            _set_attrs_fd(f.fileno(), mode, uid, gid)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _remove_leftovers(path):
    """Temporary files of a write to `path` that was killed before its rename (a directory read with
    `*` by its service, nginx's or sshd's, would otherwise take them in)."""
    for leftover in glob.glob(os.path.join(glob.escape(os.path.dirname(path)),
                                           f".{glob.escape(os.path.basename(path))}.trustops-*")):
        os.unlink(leftover)


def _apply(module, entry, diffs):
    """Bring one entry's path to what it asks for; True if it changed (or would, in check mode)."""
    path = entry.get("path")
    if not isinstance(path, str) or not os.path.isabs(path):
        raise EntryError("path must be an absolute path")
    if path != os.path.normpath(path) or path.startswith("//"):
        # `/var/lib/{{ x }}` with x empty is `/var/lib/`: a path made of an empty variable is refused,
        # whatever its state, rather than taken for its parent
        raise EntryError("path is not in normal form (a // , a trailing /, . or ..: an empty variable in it?)")
    state = entry.get("state", "file")
    if state not in STATES:
        raise EntryError(f"state {state!r} is not one of {', '.join(STATES)}")
    check = module.check_mode
    st = _lstat(path)

    if state == "absent":
        if os.path.realpath(path).count("/") < 2:
            raise EntryError("a top-level path is never removed (an empty variable in the path?)")
        if st is None:
            return False
        if not check:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        diffs.append({"before_header": path, "after_header": path, "before": "present\n", "after": "absent\n"})
        return True

    mode, uid, gid = _wanted_attrs(entry)
    parent = os.path.dirname(path)
    if st is None and not os.path.isdir(parent):
        raise EntryError(f"its directory {parent} does not exist (an entry of state directory before it makes it)")

    if state == "directory":
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise EntryError("exists and is not a directory")
        if st is None:
            if not check:
                os.mkdir(path, 0o700)
                _set_attrs(path, 0o755 if mode is None else mode, uid, gid)
            diffs.append({"before_header": path, "after_header": path, "before": "absent\n", "after": "directory\n"})
            return True
        return _fix_attrs(path, st, mode, uid, gid, check)

    if state == "link":
        target = entry.get("src")
        if not isinstance(target, str) or not target:
            raise EntryError("a link needs src, the path it points to")
        if st is not None and stat.S_ISLNK(st.st_mode) and os.readlink(path) == target:
            if not _attrs_differ(st, None, uid, gid):   # a link has no mode of its own
                return False
            if not check:
                os.lchown(path, *_ids(uid, gid))
            return True
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise EntryError("is a directory, not a link")
        before = "absent\n" if st is None else f"-> {os.readlink(path)}\n" if stat.S_ISLNK(st.st_mode) else "a file\n"
        if not check:
            tmp = os.path.join(parent, f".{os.path.basename(path)}.trustops-link")
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.lchown(tmp, *_ids(uid, gid))
            os.replace(tmp, path)
        diffs.append({"before_header": path, "after_header": path, "before": before, "after": f"-> {target}\n"})
        return True

    # state == "file"
    if not check:
        _remove_leftovers(path)
    index = entry.get("content")
    if not isinstance(index, int) or not 0 <= index < len(module.params["contents"]):
        raise EntryError("a file needs its content")
    data = base64.b64decode(module.params["contents"][index])
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise EntryError("is a directory, not a file")
    before = _read(path) if st is not None and stat.S_ISREG(st.st_mode) else None   # read once: compared, then diffed
    if before != data:
        if entry.get("validate") and not check:   # as copy and template: a validator may not be installed yet
            _validate(module, entry["validate"], data, path)
        if not check:
            _write(path, data, mode, uid, gid, st)
        old = stat.S_IMODE(st.st_mode) if st is not None else None
        new = mode if mode is not None else old
        diffs.append({"before_header": path, "after_header": path,
                      "before": _text("the old", before or b"", old, new) if st is not None else "",
                      "after": _text("the new", data, old, new)})
        return True
    return _fix_attrs(path, st, mode, uid, gid, check)


def main():
    module = AnsibleModule(argument_spec={"files": {"type": "list", "elements": "dict", "required": True},
                                          "contents": {"type": "list", "elements": "str", "default": [],
                                                       "no_log": True}},
                           supports_check_mode=True)
    changed_paths, diffs = [], []
    for index, entry in enumerate(module.params["files"]):
        try:
            if _apply(module, entry, diffs):
                changed_paths.append(entry["path"])
        except (EntryError, OSError) as e:
            what = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            module.fail_json(msg=f"{entry.get('path', f'entry {index}')}: {what}", changed_paths=changed_paths,
                             changed=bool(changed_paths))
    result = {"changed": bool(changed_paths), "changed_paths": changed_paths}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
