"""The dynamo exporter's aten->ONNX registry is built once per opset and process, not on every export (a third
of a small model's export time), and an export with the shared registry is byte for byte the plain one."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from netsurgeon.export import onnx as ns_onnx

registration = pytest.importorskip("torch.onnx._internal.exporter._registration")


def test_the_registry_is_built_once_and_the_export_is_unchanged(monkeypatch):
    model, example = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval(), torch.randn(2, 4)
    build = vars(registration.ONNXRegistry)["from_torchlib"]
    builds = []
    counting = classmethod(lambda cls, **kw: builds.append(kw) or build.__func__(cls, **kw))
    monkeypatch.setattr(registration.ONNXRegistry, "from_torchlib", counting)
    ns_onnx._torchlib_registry.cache_clear()
    shared = [ns_onnx.to_onnx_proto(model, example)[0].SerializeToString() for _ in range(2)]
    assert len(builds) == 1 and vars(registration.ONNXRegistry)["from_torchlib"] is counting  # put back after
    monkeypatch.setattr(ns_onnx, "_torchlib_registry_built_once", contextlib.nullcontext)
    plain = ns_onnx.to_onnx_proto(model, example)[0].SerializeToString()
    assert len(builds) == 2 and shared[0] == shared[1] == plain
