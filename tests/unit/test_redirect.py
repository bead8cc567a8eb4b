"""A 3xx from an agent's phone (its call forwarding): followed once when it names another
agent of the node, never to an outside address (issue 9)."""

from __future__ import annotations

from pathlib import Path

from callkit import statuses
from sipflow import Phone, Trunk
from test_agent_features import FeatureHarness, requests

from softswitch.sip.message import Response


def _phones(h: FeatureHarness, *agents: str) -> list[Phone]:
    phones = [Phone(h, agent, 5100 + int(agent) % 100) for agent in agents]
    for phone in phones:
        phone.register()
    return phones


def _caller_finals(h: FeatureHarness, phone: Phone) -> list[int]:
    return [
        m.status
        for m in h.take(phone.port)
        if isinstance(m, Response) and m.status >= 200 and m.cseq[1] == "INVITE"
    ]


def test_a_phone_forwarding_an_extension_call_to_another_agent_is_followed_once(
    tmp_path: Path,
) -> None:
    h = FeatureHarness(tmp_path)
    one, two, three = _phones(h, "1001", "1002", "1003")
    one.dial("1002", call_id="fwd-1")
    (ring,) = requests(h.take(two.port))
    two.reply(ring, 302, extra=("Contact: <sip:1003@127.0.0.1>",))
    assert "ACK" in statuses(h.take(two.port))  # the transaction ACKs the 302
    (forwarded,) = requests(h.take(three.port))
    assert forwarded.method == "INVITE" and forwarded.from_.uri.startswith("sip:1001@")
    assert h.switch.acd.agent_state("1002").value != "direct_call"  # released for queue calls
    assert h.switch.acd.agent_state("1003").value == "direct_call"
    three.reply(forwarded, 302, extra=("Contact: <sip:1002@127.0.0.1>",))  # only once
    assert requests(h.take(two.port)) == []
    assert _caller_finals(h, one) == [480]
    assert h.switch.control.sessions == {}


def test_a_redirect_to_an_outside_address_or_a_non_agent_is_a_refusal(tmp_path: Path) -> None:
    for contact in ("<sip:13800138000@carrier.example>", "<sip:4242@127.0.0.1>", "<tel:110>"):
        h = FeatureHarness(tmp_path / str(abs(hash(contact))))
        one, two, three = _phones(h, "1001", "1002", "1003")
        one.dial("1002", call_id="fwd-out")
        (ring,) = requests(h.take(two.port))
        two.reply(ring, 302, extra=(f"Contact: {contact}",))
        assert requests(h.take(three.port)) == []
        assert _caller_finals(h, one) == [480], contact


def test_a_queue_call_redirected_by_a_phone_goes_to_the_agent_the_acd_picks(
    tmp_path: Path,
) -> None:
    """The ACD chooses who takes a queue call: a phone's forwarding is a refusal, and the
    call rings the next agent in the queue's order, not the forwarding's target."""
    h = FeatureHarness(tmp_path)
    two, three = _phones(h, "1002", "1003")
    Trunk(h).invite("9000")
    rings = [(p, requests(h.take(p.port))) for p in (two, three)]
    (phone, (ring,)) = next((p, r) for p, r in rings if r)
    other = three if phone is two else two
    phone.reply(ring, 302, extra=(f"Contact: <sip:{phone.agent}@127.0.0.1:5999>",))
    assert [r.method for r in requests(h.take(other.port))] == ["INVITE"]
