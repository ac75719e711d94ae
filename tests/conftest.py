import os
import warnings

import pytest
import torch

import netsurgeon as ns

if os.environ.get("PYTEST_XDIST_WORKER"):
    # under `pytest -n N` each worker computes on one thread (N workers share the cores), and so do the
    # processes it starts (examples, the CLI in a child, torchrun), which inherit the variable
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def shared_model():
    """``get(key, build)``: a read-only model built once per session and shared by every test that asks for it.

    Sharing is safe because ``apply``/``plan`` never mutate their input; the teardown checks that rule: every
    shared model's state_dict must be bit for bit what it was when built. ``get`` also restores the RNG
    state that followed the build (seeded 0), so what a test draws next is what it drew with a fresh model.
    """
    cache: dict = {}

    def get(key, build):
        if key not in cache:
            torch.manual_seed(0)
            model = build()
            snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
            cache[key] = (model, snapshot, torch.get_rng_state())
        model, _, rng = cache[key]
        torch.set_rng_state(rng)
        return model

    yield get
    changed = [key for key, (model, snapshot, _) in cache.items() if not state_equal(model.state_dict(), snapshot)]
    assert not changed, f"shared read-only models were modified by a test: {changed}"


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> str:
    """One SQLite MLflow store per test process, for the tracker tests that do not check the default store:
    creating a store runs MLflow's database migrations (about 2.5 s on an idle core, far more on a busy one).
    ``tests.trackers.use_mlflow_store`` points a test at it."""
    pytest.importorskip("mlflow")
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
