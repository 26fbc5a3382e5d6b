"""The scheduler: binds pending pods to nodes (see :mod:`apiserver.scheduler.scheduler`).

``Scheduler`` has a controller's constructor ``(client, informers)``, so the class itself
is the factory ``run_controllers`` takes; ``functools.partial`` sets its options.
"""

from .scheduler import DEFAULT_SCHEDULER_NAME, Scheduler

__all__ = ["DEFAULT_SCHEDULER_NAME", "Scheduler"]
