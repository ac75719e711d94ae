"""Fine-tuning after surgery: ``finetune(model, data, config)``, evaluation and BN recalibration.

See :mod:`netsurgeon.train.loop` for what the loop does and :class:`FinetuneConfig` for its knobs.
"""

from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.evaluate import EvalResult, evaluate, recalibrate_bn
from netsurgeon.train.loop import CHECKPOINT, FinetuneResult, finetune, resolve_data

__all__ = ["CHECKPOINT", "EvalResult", "FinetuneConfig", "FinetuneResult", "evaluate", "finetune",
           "recalibrate_bn", "resolve_data"]
