"""Shared fixtures: the ``gpu`` marker skips without CUDA (or fails, on request)."""

from __future__ import annotations

import os

import pytest


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken torch means no CUDA here
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    if os.environ.get("STREAMLIB_REQUIRE_GPU") == "1":
        return  # let gpu tests run and fail loudly on a machine that should have CUDA
    skip = pytest.mark.skip(reason="needs CUDA (set STREAMLIB_REQUIRE_GPU=1 to fail instead)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _close_default_runtime() -> object:
    """Each test starts and ends without a default runtime left running."""
    yield
    import streamlib.runtime.runtime as graph

    if graph._default is not None:
        graph._default.close()
