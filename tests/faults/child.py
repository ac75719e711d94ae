"""Run the netsurgeon CLI and kill -9 this process at a chosen point (``python child.py POINT ARGS...``).

Points (the Nth call is given as POINT:N, default 1):

* ``safetensors``: after model.safetensors's temporary is written, before anything is renamed;
* ``onnx``: after model.onnx's temporary is written, during the parity check;
* ``between-renames``: after the first output file was renamed, before the second;
* ``checkpoint``: halfway through writing checkpoint.pt (its temporary);
* ``after-checkpoint``: right after checkpoint.pt was renamed into place.

SIGTERM points (the process is not killed: it is sent SIGTERM, as SLURM, Kubernetes and torchrun do):

* ``sigterm-train``: after the Nth training step;
* ``sigterm-checkpoint``: while the Nth checkpoint.pt is being written;
* ``sigterm-parent-train``: after the Nth training step, to the parent process (under torchrun: the agent,
  which forwards SIGTERM to every rank);
* ``sigterm-eval``: at the Nth evaluation's first batch (1: the evaluation before fine-tuning);
* ``sigterm-bn``: at the BatchNorm re-estimation's first batch (with ``bn_recalibrate=on``);
* ``sigterm-export``: while the Nth model.safetensors is being written (after training);
* ``sigterm-load``: while the Nth model is being built (before training);
* ``sighup-train``: SIGHUP (the terminal closed) after the Nth training step;
* ``sigint-group-train``: SIGINT to the whole process group after the Nth training step, as a terminal's Ctrl-C
  reaches the DataLoader workers too (start the child in its own session).

Under torchrun a point fires on one rank only: the one in the ``FAULT_RANK`` variable (default 1).
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm_sigterm(point: str, nth: int) -> None:
    import importlib

    if "RANK" in os.environ and os.environ["RANK"] != os.environ.get("FAULT_RANK", "1"):
        return
    loop = importlib.import_module("netsurgeon.train.loop")
    state = importlib.import_module("netsurgeon.train.state")
    calls = {"n": 0}
    target = os.getppid() if point == "sigterm-parent-train" else os.getpid()

    def due() -> bool:
        calls["n"] += 1
        return calls["n"] == nth

    if point in ("sigterm-train", "sigterm-parent-train", "sighup-train", "sigint-group-train"):
        original_step = loop._Run._train_step

        def step(self, *args, **kwargs):
            lr = original_step(self, *args, **kwargs)
            if due():
                if point == "sigint-group-train":
                    os.killpg(os.getpgrp(), signal.SIGINT)
                else:
                    os.kill(target, signal.SIGHUP if point == "sighup-train" else signal.SIGTERM)
            return lr

        loop._Run._train_step = step
    elif point in ("sigterm-export", "sigterm-load"):  # SIGTERM as the run writes its model, or loads it
        module_name, attr = (("netsurgeon.export", "write_safetensors") if point == "sigterm-export"
                             else ("netsurgeon.workflows.finetune", "load_from_options"))
        module = importlib.import_module(module_name)
        original_call = getattr(module, attr)

        def signalled(*args, **kwargs):
            if due():
                os.kill(target, signal.SIGTERM)
            return original_call(*args, **kwargs)

        setattr(module, attr, signalled)
    elif point in ("sigterm-eval", "sigterm-bn"):
        name = "evaluate" if point == "sigterm-eval" else "recalibrate_bn"
        original = getattr(loop, name)

        def first_batch_signals(model, batches, *args, **kwargs):
            def signalled():
                for i, batch in enumerate(batches):
                    if i == 0 and due():
                        os.kill(target, signal.SIGTERM)
                    yield batch

            return original(model, signalled(), *args, **kwargs)

        setattr(loop, name, first_batch_signals)
    elif point == "sigterm-checkpoint":
        original_save = state.torch.save

        def save(payload, path, *args, **kwargs):
            if due():
                os.kill(target, signal.SIGTERM)  # arrives while this checkpoint is being written
            original_save(payload, path, *args, **kwargs)

        state.torch.save = save
    else:
        raise SystemExit(f"unknown point {point}")


def arm(point: str, nth: int) -> None:
    import importlib

    if point.startswith(("sigterm", "sighup", "sigint")):
        arm_sigterm(point, nth)
        return

    export_pkg = importlib.import_module("netsurgeon.export")  # the package (netsurgeon.export is also a function)
    atomic = importlib.import_module("netsurgeon.atomic")
    state = importlib.import_module("netsurgeon.train.state")

    calls = {"n": 0}

    def due() -> bool:
        calls["n"] += 1
        return calls["n"] == nth

    if point == "safetensors":
        original = export_pkg.write_safetensors

        def write(*args, **kwargs):
            original(*args, **kwargs)
            if due():
                die()

        export_pkg.write_safetensors = write
    elif point == "onnx":
        original_parity = export_pkg.onnx_parity

        def parity(*args, **kwargs):
            if due():
                die()
            return original_parity(*args, **kwargs)

        export_pkg.onnx_parity = parity
    elif point == "between-renames":
        original_replace = atomic.os.replace

        class _Os:
            def __getattr__(self, name):
                return getattr(os, name)

            @staticmethod
            def replace(src, dst):
                original_replace(src, dst)
                if str(dst).endswith("model.safetensors") and due():
                    die()

        atomic.os = _Os()
        original_link = atomic._link_no_clobber

        def link(temp, final):
            original_link(temp, final)
            if str(final).endswith("model.safetensors") and due():
                die()

        atomic._link_no_clobber = link
    elif point in ("checkpoint", "after-checkpoint"):
        original_save = state.torch.save

        def save(payload, path, *args, **kwargs):
            if point == "checkpoint" and due():
                original_save(payload, path, *args, **kwargs)
                with open(path, "r+b") as fh:  # a half-written temporary
                    fh.truncate(os.path.getsize(path) // 2)
                die()
            original_save(payload, path, *args, **kwargs)

        state.torch.save = save
        if point == "after-checkpoint":
            original_state = state.save_state

            def save_state(*args, **kwargs):
                original_state(*args, **kwargs)
                if due():
                    die()

            importlib.import_module("netsurgeon.train.loop").save_state = save_state
    else:
        raise SystemExit(f"unknown point {point}")


if __name__ == "__main__":
    name, _, n = sys.argv[1].partition(":")
    arm(name, int(n or 1))
    from netsurgeon.cli import app

    app(sys.argv[2:], prog_name="netsurgeon")
