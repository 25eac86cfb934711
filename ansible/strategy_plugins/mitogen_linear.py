"""Mitogen's linear strategy (PyPI `mitogen`): one Python per host for the whole converge instead
of a module shipped over SSH for every task. On the twin the converge with nothing to change took
1:05 with it against 2:52 with Ansible's own linear strategy (same recaps: changed=0 everywhere).

One change to it: the list of installed collections is read once, here, in the controller's main
process, before it forks a worker per task and host. Mitogen's planner reads it again in every worker
that runs a collection's module (community.general.ufw, ansible.posix.sysctl, community.crypto, ...):
each read walks every collection the `ansible` package ships and parses their metadata, and its
cache dies with the worker. That was 15 % of the controller's CPU in a converge with nothing to
change (py-spy). The paths cannot change during a run: collections are found at start-up.
"""
import ansible.collections.list
import ansible_mitogen.planner
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401

_COLLECTION_DIRS = tuple(path.decode("utf-8") if isinstance(path, bytes) else path
                         for path in ansible.collections.list.list_collection_dirs())


def _load_collections(invocation):
    """ansible_mitogen.planner._load_collections, from the list read at start-up."""
    invocation._extra_sys_paths.update(_COLLECTION_DIRS)


ansible_mitogen.planner._load_collections = _load_collections
