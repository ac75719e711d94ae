"""Fine-tuning after surgery: ``finetune(model, data, config)`` (``run_training`` then ``export_finetuned``),
evaluation and BN recalibration.

See :mod:`netsurgeon.train.loop` for what the loop does, :mod:`netsurgeon.train.finish` for the export
after it, and :class:`FinetuneConfig` for its knobs.
"""

from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.evaluate import EvalResult, evaluate, recalibrate_bn
from netsurgeon.train.finish import export_finetuned, finetune, training_provenance
from netsurgeon.train.loop import CHECKPOINT, FinetuneResult, resolve_data, run_output_files, run_training

__all__ = ["CHECKPOINT", "EvalResult", "FinetuneConfig", "FinetuneResult", "evaluate", "export_finetuned",
           "finetune", "recalibrate_bn", "resolve_data", "run_output_files", "run_training",
           "training_provenance"]
