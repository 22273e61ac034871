"""WorkerPool's parameter checks (its threads are exercised through the dispatchers' tests)."""

from __future__ import annotations

import pytest

from streamlib.errors import ConfigError
from streamlib.runtime.workerpool import WorkerPool


@pytest.mark.parametrize("max_workers", [0, -1])
def test_max_workers_below_one_is_a_config_error(max_workers: int) -> None:
    with pytest.raises(ConfigError) as info:
        WorkerPool(max_workers)
    assert str(info.value) == f"max_workers must be None or >= 1, got {max_workers!r}"
