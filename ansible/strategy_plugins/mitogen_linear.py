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
from ansible import constants as C
from ansible._internal import _task
from ansible._internal._templating._engine import TemplateEngine
from ansible.executor.task_executor import TaskExecutor
from ansible.executor.task_result import _RawTaskResult
from ansible.playbook.handler import Handler
from ansible.plugins import loader as plugin_loader
from ansible.utils.fqcn import add_internal_fqcns
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401

_COLLECTION_DIRS = tuple(path.decode("utf-8") if isinstance(path, bytes) else path
                         for path in ansible.collections.list.list_collection_dirs())


def _load_collections(invocation):
    """ansible_mitogen.planner._load_collections, from the list read at start-up."""
    invocation._extra_sys_paths.update(_COLLECTION_DIRS)


ansible_mitogen.planner._load_collections = _load_collections


_LinearStrategy = StrategyModule


class MainProcessTasks:
    """What a strategy runs without a worker: a task that a host skips, or a control-node action (see
    _runs_here). Mixed into Mitogen's linear strategy here and its free one (mitogen_free.py).

    Ansible forks a worker per task and host, and the worker is the one that finds the task's `when`
    false: a skipped task cost as much as one that ran (61 tasks every host skipped took 5.3 s of a
    converge with nothing to change). Here the `when` of a plain task, an include_tasks or an
    include_role (no loop, no delegation, not a handler; a skipped include includes nothing, as
    Ansible's IncludedFile passes over a skipped result) is judged in the main process first, with
    the host's task variables; when it is false the result a worker would have sent (skipped, the
    false condition, no_log) is sent without the fork. So is a loop with no items (the converge's
    drift loops: the files, keys and rules not yet as wanted, none once they are). Anything else, or
    a `when` or loop this cannot judge (an undefined variable, an error), goes to a worker as before,
    which judges it and reports as it always did.
    """

    def _queue_task(self, host, task, task_vars, play_context):
        skipped = None
        if task.when or task.loop is not None:   # only these are judged here (no copy of the variables else)
            judged_with = _as_the_worker_sees_them(task, task_vars, self._loader)
            skipped = _skipped_here(task, judged_with)
            if skipped is None:
                skipped = _empty_loop_here(task, judged_with)
        if skipped is None and not _runs_here(task):
            return super()._queue_task(host, task, task_vars, play_context)
        # as the worker would be: in the cache the results thread reads (a loop's items are sent as
        # they run), announced, run on its own copy of the task (running it finalises the task and
        # its parents), its result sent
        self._queued_task_cache[(host.name, task._uuid)] = {
            "host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
        self._tqm.send_callback("v2_runner_on_start", host, task)
        if skipped is not None:
            ran, result = task, skipped
        else:
            ran = task.copy()
            with _task.TaskContext(ran):   # as WorkerProcess.run (first_found as with_first_found reads it)
                result = TaskExecutor(host, ran, task_vars, play_context, self._loader,
                                      plugin_loader.get_plugin_loader_namespace(), self._final_q,
                                      self._variable_manager).run()
        self._final_q.send_task_result(_RawTaskResult(host=host, task=ran, return_data=result,
                                                      task_fields=ran.dump_attrs()))
        self._pending_results += 1


class StrategyModule(MainProcessTasks, _LinearStrategy):  # noqa: F811 - the one Ansible loads, Mitogen's with the change above
    """Mitogen's linear strategy, with MainProcessTasks."""


def _as_the_worker_sees_them(task, task_vars, loader) -> dict:
    """The task's variables as a worker judges its `when` and loop with them: TaskExecutor adds the
    task's search path first (a lookup such as fileglob or first_found searches it)."""
    search = task.get_search_path()
    if loader.get_basedir() not in search:
        search = [*search, loader.get_basedir()]
    return dict(task_vars, ansible_search_path=search)


# Actions that run on the control node alone and only return a result (no connection, no file on a
# host, nothing the main process keeps but what the strategy does with the result).
CONTROL_NODE_ACTIONS = frozenset(add_internal_fqcns(
    ("set_fact", "include_vars", "assert", "debug", "fail", "validate_argument_spec")))


def _runs_here(task) -> bool:
    """Whether `task` runs in the main process rather than a worker: a control-node action (each of
    these cost a worker per host, 0.05 to 0.45 s a task on four hosts; the roles' argument checks and
    OS variables are 35 of them per converge), not delegated, without a timeout or async, and nothing
    that waits (until/retries, a loop's pause): in this process it would hold up every other host.
    A slow lookup inside one of them would too; the roles have none."""
    return (task.action in CONTROL_NODE_ACTIONS and not task.delegate_to and not task.timeout
            and not task.async_val and not isinstance(task, Handler) and not task.until and not task.retries
            and not (task.loop_control and task.loop_control.pause))


def _skipped_here(task, task_vars):
    """The result of a worker that skips `task` by its `when`, or None when a worker must decide."""
    if (not task.when or task.loop is not None or task.loop_with or task.delegate_to or task.run_once
            or isinstance(task, Handler) or task.action in C._ACTION_IMPORT_TASKS or task.action in C._ACTION_META):
        return None
    context = {}
    try:
        if task._resolve_conditional(task.when, task_vars, result_context=context):
            return None
        result = dict(changed=False, skipped=True, skip_reason="Conditional result was False") | context
        task.update_result_no_log(TemplateEngine(task._loader, variables=task_vars), result)
    except Exception:  # the worker judges it again and reports the error as Ansible does
        return None
    return result


def _empty_loop_here(task, task_vars):
    """The result of a worker whose `loop` (not a with_ lookup) has no items, or None when a worker
    must run it. Ansible templates the loop before the `when`, which it judges per item: with no items
    the result is the same whatever the `when`."""
    if (task.loop is None or task.loop_with or task.delegate_to or task.run_once or isinstance(task, Handler)
            or task.action in C._ACTION_ALL_INCLUDES or task.action in C._ACTION_META):
        return None
    try:
        items = TemplateEngine(task._loader, variables=task_vars).template(task.loop)
    except Exception:  # the worker templates it again and reports the error as Ansible does
        return None
    if not isinstance(items, list) or items:
        return None
    return dict(changed=False, skipped=True, skipped_reason="No items in the list", results=[])
