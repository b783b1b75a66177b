"""UPIDs are parsed by our own code, in PVE's format (pve-common UPID.pm)."""

from __future__ import annotations

import pytest

from proxmox_vm_operator.proxmox import Upid, parse_upid


def test_a_token_started_task_id_is_split_into_its_fields() -> None:
    text = "UPID:pve1:0001A2B3:00C8D7E6:6740A3F1:qmshutdown:100:root@pam!op:"
    upid = parse_upid(text)
    assert upid == Upid(
        raw=text,
        node="pve1",
        starttime=0x6740A3F1,
        type="qmshutdown",
        id="100",
        user="root@pam!op",
    )
    assert str(upid) == text


def test_pstart_may_have_nine_hex_digits_and_the_id_may_be_empty() -> None:
    upid = parse_upid("UPID:pve-node-2:000000FF:1A2B3C4D5:6740A3F1:vzdump::root@pam:")
    assert (upid.node, upid.type, upid.id) == ("pve-node-2", "vzdump", "")


@pytest.mark.parametrize(
    "text",
    [
        "UPID:pve1:0001A2B3:00C8D7E6:6740A3F1:qmstop:100:root@pam",  # no trailing colon
        "UPID:pve1:1A2B3:00C8D7E6:6740A3F1:qmstop:100:root@pam:",  # pid not 8 digits
        "UPID:pve1:0001A2B3:00C8D7E6:6740A3F1:qmstop:100:root@pam:extra:",
        "UPID:-pve1:0001A2B3:00C8D7E6:6740A3F1:qmstop:100:root@pam:",
        "UPID:pve1:0001A2B3:00C8D7E6:6740A3F1:qm/stop:100:root@pam:",
        "UPID:pve1:0001A2B3:00C8D7E6:6740A3F1:qmstop:100::",
        "pve1:0001A2B3:00C8D7E6:6740A3F1:qmstop:100:root@pam:",
        "",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="UPID"):
        parse_upid(text)
