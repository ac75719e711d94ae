import warnings

import pytest
import torch

import netsurgeon as ns


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        yield


@pytest.fixture
def tiny_resnet():
    return ns.load_model("netsurgeon:tiny_resnet")


@pytest.fixture
def tiny_convnet():
    return ns.load_model("netsurgeon:tiny_convnet")


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
