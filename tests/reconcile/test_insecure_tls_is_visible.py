"""A Secret with insecureSkipTLSVerify works, but never silently: the Ready message says TLS is
not verified, and a Warning event says so when the VM becomes Ready."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .driver import Driver, FakeSecrets


# urllib3 warns about every unverified request: that is the very setting under test.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_an_unverified_endpoint_is_reported_in_ready_and_by_one_warning(
    secrets: FakeSecrets, make_driver: Callable[..., Driver]
) -> None:
    assert secrets.data is not None
    data = {k: v for k, v in secrets.data.items() if k != "caCert"}
    secrets.restore({**data, "insecureSkipTLSVerify": "true"})
    driver = make_driver()
    await driver.settle()
    await driver.run_passes(2)  # steady state: no second warning

    assert driver.ready["status"] == "True"
    assert "TLS is not verified" in driver.ready["message"]
    warnings = [e for e in driver.events if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["InsecureTLS"]
    assert "caCert" in warnings[0].message


async def test_a_verified_endpoint_says_nothing_about_tls(
    make_driver: Callable[..., Driver],
) -> None:
    driver = make_driver()
    await driver.settle()
    assert "TLS" not in driver.ready["message"]
    assert not [e for e in driver.events if e.type == "Warning"]
