"""Which SRTP setting call control gives the node's offer to an agent's phone
(`media_encryption`, `media.agent_encryption`; the SDES itself: test_media_sdes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_agent_features import FeatureHarness, talking


@pytest.mark.parametrize(
    ("agent_1001", "expected"),
    [
        ({}, "none"),
        ({"media_encryption": "srtp"}, "srtp"),
        ({"media_encryption": "optional"}, "optional"),
    ],
)
def test_the_agents_setting_reaches_the_offer_to_its_phone(
    tmp_path: Path, agent_1001: dict, expected: str
) -> None:
    # The demo phones register over UDP: `auto` (the default) is plain RTP for them.
    h = FeatureHarness(tmp_path, agent_1001=agent_1001)
    trunk, _phones, _invite, call_id = talking(h, "1001")
    session = h.switch.control.sessions[call_id]
    agent_leg = session.legs[1].leg_id
    assert h.media.encryption == {agent_leg: expected}  # the caller's leg is only answered
    trunk.bye()
