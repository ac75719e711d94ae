"""Fine-tuning after surgery: ``finetune(model, data, config)`` (``run_training`` then ``export_finetuned``),
evaluation and BN recalibration.

One process or many (torchrun + DistributedDataParallel), CPU or GPU. What it does, in order:

1. Copies the model (the caller's is never trained in place), moves it to the device, and builds the
   optimizer (any of timm's) *after* surgery, with a separate learning rate for parameters a pass created.
2. Fresh run: re-estimates BatchNorm statistics after a function-changing structural pass, then
   evaluates (epoch 0 of the metrics: the accuracy right after surgery). ``resume``: restores the
   checkpoint instead, including the RNG state and the position inside the epoch.
3. Trains epoch by epoch: seeded sample order (a pure function of seed, epoch and rank), training
   augmentation (``augment``) and mixup/CutMix whose draws are pure functions of (seed, epoch, index,
   rank) (``netsurgeon.data.draw_seed``), warm-up then cosine or step schedule, label smoothing,
   gradient accumulation, gradient clipping, AMP and channels_last on GPUs, weight EMA (timm's
   ``ModelEmaV3``, evaluated beside the raw weights); the training hooks of the passes in the model's
   history (``netsurgeon.hooks``) run at their events. Evaluation uses the model's own preprocessing.
   After every epoch (rank 0 only): an atomic checkpoint, the metrics as CSV and JSON lines, a PNG of
   the curves, and TensorBoard scalars (``netsurgeon.train.tracking``).
4. Ctrl-C, SIGTERM (what SLURM, Kubernetes and torchrun send before killing) or SIGHUP stops after the running
   batch, on every rank at the same batch, saves a checkpoint and raises ``TrainingInterrupted`` (before
   training, during the epoch-0 evaluation or BN recalibration, it stops at their next batch, saving nothing).
   A non-finite loss (or weights, or test loss) raises ``TrainingDiverged`` before anything from it is saved.
   Resuming from it gives bit-identical weights on the CPU; a second Ctrl-C aborts at once, a repeated
   SIGTERM does not (a scheduler and torchrun may both deliver one).
5. Returns the trained model (raw or EMA weights) with its metrics and what the run was (config, data,
   AMP, world size): a :class:`FinetuneResult`. Exporting it is the caller's step
   (:func:`netsurgeon.train.finish.export_finetuned`; ``finetune`` runs both).

The loop is :mod:`netsurgeon.train.loop`, the export after it :mod:`netsurgeon.train.finish`, and its knobs
:class:`FinetuneConfig`.
"""

from netsurgeon.train.batches import resolve_data
from netsurgeon.train.config import FinetuneConfig
from netsurgeon.train.evaluate import EvalResult, evaluate, recalibrate_bn
from netsurgeon.train.finish import export_finetuned, finetune, training_provenance
from netsurgeon.train.loop import run_training
from netsurgeon.train.outputs import CHECKPOINT, run_output_files
from netsurgeon.train.result import FinetuneResult

__all__ = ["CHECKPOINT", "EvalResult", "FinetuneConfig", "FinetuneResult", "evaluate", "export_finetuned",
           "finetune", "recalibrate_bn", "resolve_data", "run_output_files", "run_training",
           "training_provenance"]
