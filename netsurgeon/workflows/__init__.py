"""The commands as library calls: each takes one settings object (the command's options, by the same
names) and does everything but printing, so the CLI only parses and prints and a Python caller gets the
same checks, in the same order, with the same messages.

==============================  ==============================  ========================
command                         settings                        call
==============================  ==============================  ========================
``netsurgeon apply``            :class:`ApplySettings`          :func:`apply_from_settings`
``netsurgeon finetune``         :class:`FinetuneSettings`       :func:`finetune_from_settings`
``netsurgeon run``              :class:`RunSettings`            :func:`run_from_settings`
``netsurgeon compare``          :class:`CompareSettings`        :func:`compare_from_settings`
``netsurgeon export-hub``       :class:`~.hub.HubSettings`      :func:`~.hub.export_hub`
==============================  ==============================  ========================

``options`` holds the checks they share (output directory, input size, class count, seed, model loading).
"""

from netsurgeon.workflows.apply import ApplyOutcome, ApplySettings, apply_from_settings
from netsurgeon.workflows.compare import CompareSettings, compare_from_settings
from netsurgeon.workflows.finetune import FinetuneOutcome, FinetuneSettings, finetune_from_settings
from netsurgeon.workflows.run import RunOutcome, RunSettings, run_from_settings

__all__ = ["ApplyOutcome", "ApplySettings", "CompareSettings", "FinetuneOutcome", "FinetuneSettings", "RunOutcome",
           "RunSettings", "apply_from_settings", "compare_from_settings", "finetune_from_settings",
           "run_from_settings"]
