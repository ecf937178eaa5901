"""Fixtures shared by the test modules."""
from pathlib import Path

import pytest

from tiny_models import KINDS, make_tiny_encoder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """``tiny_encoder(kind="bert")``: the folder of a tiny random encoder ("bert", "roberta" or
    "xlnet"), built once per test session. Shared: read it, or copy it (shutil.copytree) to change it."""
    built: dict[str, Path] = {}

    def get(kind: str = "bert") -> Path:
        if kind not in built:
            built[kind] = make_tiny_encoder(kind, tmp_path_factory.mktemp(f"tiny-{kind}") / kind)
        return built[kind]

    return get


@pytest.fixture(scope="session")
def tiny_encoders(tiny_encoder) -> dict[str, str]:
    """All three tiny encoders, kind -> folder (str)."""
    return {kind: str(tiny_encoder(kind)) for kind in KINDS}


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: the same kernels in every run (bit-identical comparisons), and
    no OpenMP threads spinning against other work on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
