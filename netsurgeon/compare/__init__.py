"""``netsurgeon compare``: did the surgery help? Arms x seeds of paired fine-tunes, with statistics.

One base model, one data spec and one fine-tune config; the control ("fine-tune only") and each arm
(an ordered list of passes) are fine-tuned once per seed, each as an ordinary ``finetune`` output
directory under ``out/jobs/ARM/seed-S/``. For one seed every arm starts from the same weights, sees the
same sample order and is evaluated on the same test images (the paired design), so the per-seed
difference to the control and the per-image McNemar test (``netsurgeon.compare.stats``) measure the
surgery, not the luck of the draw. ``compare.md``/``.json``/``.csv``/``.png`` hold the result.

Modules: ``spec`` (what the experiment is, as JSON), ``job`` (one (arm, seed): the code path every
executor runs), ``executors`` (local, local in parallel, SLURM through submitit), ``stats``, ``report``,
``run`` (``compare``: lock, check, skip/resume, report).
"""

from netsurgeon.compare.executors import JobFailed, SlurmOptions
from netsurgeon.compare.run import CompareResult, compare, run_spec
from netsurgeon.compare.spec import CONTROL, Arm, CompareSpec, expand_arm, parse_arm

__all__ = ["CONTROL", "Arm", "CompareResult", "CompareSpec", "JobFailed", "SlurmOptions", "compare", "expand_arm",
           "parse_arm", "run_spec"]
