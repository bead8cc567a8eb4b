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


def test_a_phone_that_must_use_srtp_is_refused_a_plain_offer_and_served_an_srtp_one(
    tmp_path: Path,
) -> None:
    """An agent whose media must be encrypted (`media_encryption: srtp`, or `auto` over
    TLS) calling with a plain RTP offer gets 488: answering would put the call in clear."""
    from sipflow import Phone
    from test_agent_features import requests

    h = FeatureHarness(tmp_path, agent_1001={"media_encryption": "srtp"})
    one, two = Phone(h, "1001", 5101), Phone(h, "1002", 5102)
    one.register()
    two.register()
    one.dial("1002", call_id="plain-1")  # Phone.dial offers RTP/AVP
    refused = [m for m in h.take(one.port) if getattr(m, "status", 0) >= 400]
    assert [(r.status, r.reason) for r in refused][-1] == (488, "SRTP Required")
    assert requests(h.take(two.port)) == [] and h.switch.control.sessions == {}
    key = "inline:" + "A" * 40
    sdp = (
        "v=0\no=- 4 4 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
        f"m=audio 7100 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {key}\n"
    )
    one.send_authenticated("INVITE", "1002", "savp-1", sdp, "application/sdp")
    assert [r.method for r in requests(h.take(two.port))] == ["INVITE"]
