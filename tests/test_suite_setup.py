"""The suite's own machinery: what `make test` relies on to keep timing tests apart."""

from __future__ import annotations

import pytest


@pytest.mark.timing
def test_timing_tests_share_one_xdist_worker(request: pytest.FixtureRequest) -> None:
    # xdist tells its scheduler a test's group by suffixing the test's id with "@group". On pytest
    # 9.2 that suffix is lost and the groups are silently ignored (pytest-dev/pytest-xdist#1386):
    # the timing tests would then run side by side. Outside `--dist loadgroup` there is nothing to check.
    config = request.config
    if not hasattr(config, "workerinput") or not config.getvalue("loadgroup"):
        return
    assert request.node.nodeid.endswith("@timing"), f"xdist ignores the test groups here: {request.node.nodeid}"
