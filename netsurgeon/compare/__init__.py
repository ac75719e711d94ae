"""``netsurgeon compare``: did the surgery help? Arms x seeds of paired fine-tunes, with statistics.

One base model, one data spec and one fine-tune config; the control ("fine-tune only") and each arm
(an ordered list of passes) are fine-tuned once per seed, each as an ordinary ``finetune`` output
directory under ``out/jobs/ARM/seed-S/``. For one seed every arm starts from the same weights, sees the
same sample order and is evaluated on the same test images (the paired design), so the per-seed
difference to the control measures the surgery, not the luck of the draw; the seed is the unit of the
statistics (``netsurgeon.compare.stats``: exact sign-flip test, bootstrap interval, Holm, power; McNemar
per seed as a per-image diagnostic). ``seeds="auto"`` runs the seeds in looks until every arm is decided.
``compare.md``/``.json``/``.csv``/``.png`` hold the result.

Modules: ``spec`` (what the experiment is, as JSON), ``job`` (one (arm, seed): the code path every
executor runs: ``apply`` then ``netsurgeon.train.finetune``), ``plan`` (every arm dry-run on the base model
before any training; an arm that changes nothing is refused), ``executors`` (a registry: local, parallel,
SLURM through submitit), ``stats``, ``report``, ``run`` (``compare``: check, plan, lock, skip/resume, report).
"""

from netsurgeon.compare.executors import JobFailed, SlurmOptions, make_executor, register_executor
from netsurgeon.compare.plan import ArmPlan
from netsurgeon.compare.run import CompareResult, compare, run_spec
from netsurgeon.compare.spec import CONTROL, Arm, CompareSpec, expand_arm, parse_arm

__all__ = ["CONTROL", "Arm", "ArmPlan", "CompareResult", "CompareSpec", "JobFailed", "SlurmOptions", "compare",
           "expand_arm", "make_executor", "parse_arm", "register_executor", "run_spec"]
