"""Mitogen's free strategy (PyPI `mitogen`) with what mitogen_linear.py adds to its linear one: a
task a host skips, or a control-node action, costs no worker; the collections are listed once.

site.yml runs the play of each group's own services with it: db, ops and app hosts go through
their roles at once instead of one play after another. Each host still runs its own tasks in order.
"""
import sys

import ansible_mitogen.loaders
import ansible_mitogen.strategy
from ansible.plugins.loader import strategy_loader

# the linear plugin of ansible.cfg's strategy_plugins (its module also lists the collections once)
MainProcessTasks = sys.modules[strategy_loader.get("mitogen_linear", class_only=True).__module__].MainProcessTasks
_FreeStrategy = ansible_mitogen.loaders.strategy_loader.get("free", class_only=True)


class StrategyModule(MainProcessTasks, ansible_mitogen.strategy.StrategyMixin, _FreeStrategy):
    """Mitogen's free strategy, with MainProcessTasks."""

    def run(self, iterator, play_context):
        # Ansible's default callback prints each result under its own task's name only for a play
        # whose strategy is named free (it otherwise names the task last started, by any host)
        iterator._play.strategy = "ansible.builtin.free"
        return super().run(iterator, play_context)
