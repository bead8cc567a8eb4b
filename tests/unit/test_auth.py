"""Digest authentication (RFC 7616 / RFC 8760 as used by RFC 3261 §22), server side."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.sip.auth import (
    AuthError,
    DigestCredentials,
    DigestServer,
    digest_response,
    ha1,
    parse_authorization,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "hotline.test"
USERS = {"1001": "pw1001", "1002": "pw1002"}
URI = "sip:hotline.test"


# --- an independent client, written with hashlib only (not the module under test) ---------


def _hex(algorithm: str, text: str) -> str:
    base = algorithm.removesuffix("-sess")
    hasher = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[base]
    return hasher(text.encode()).hexdigest()


def client_response(
    algorithm: str,
    username: str,
    password: str,
    realm: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
) -> str:
    a1 = _hex(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        a1 = _hex(algorithm, f"{a1}:{nonce}:{cnonce}")
    a2 = _hex(algorithm, f"{method}:{uri}")
    if qop is None:
        return _hex(algorithm, f"{a1}:{nonce}:{a2}")
    return _hex(algorithm, f"{a1}:{nonce}:{nc}:{cnonce}:{qop}:{a2}")


def challenge_param(challenge: str, name: str) -> str | None:
    """Read one parameter from a challenge the simple way SIP clients do."""
    for part in challenge.removeprefix("Digest ").split(", "):
        key, _, value = part.partition("=")
        if key == name:
            return value.strip('"')
    return None


def authorization(
    challenge: str,
    username: str = "1001",
    password: str | None = None,
    method: str = "REGISTER",
    uri: str = URI,
    nc: int | None = 1,
    cnonce: str = "0a4f113b",
    realm: str | None = None,
    nonce: str | None = None,
) -> str:
    """An Authorization value answering `challenge` (qop=auth unless nc is None)."""
    password = USERS.get(username, "whatever") if password is None else password
    algorithm = challenge_param(challenge, "algorithm") or "MD5"
    realm = realm or challenge_param(challenge, "realm") or ""
    nonce = nonce or challenge_param(challenge, "nonce") or ""
    qop = "auth" if nc is not None else None
    nc_text = f"{nc:08x}" if nc is not None else None
    response = client_response(
        algorithm, username, password, realm, method, uri, nonce, qop, nc_text, cnonce
    )
    value = (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}'
    )
    if qop is not None:
        value += f', qop={qop}, nc={nc_text}, cnonce="{cnonce}"'
    return value


def lookup_factory(calls: list[tuple[str, str]] | None = None):
    def lookup(username: str, algorithm: str) -> str | None:
        if calls is not None:
            calls.append((username, algorithm))
        password = USERS.get(username)
        return None if password is None else ha1(username, REALM, password, algorithm)

    return lookup


LOOKUP = lookup_factory()


def make_server(**kwargs) -> DigestServer:
    kwargs.setdefault("algorithms", ("MD5", "SHA-256"))
    return DigestServer(SECRET, REALM, **kwargs)


# --- RFC vectors ---------------------------------------------------------------------------

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example_responses_are_reproduced(algorithm: str, expected: str) -> None:
    # RFC 7616 §3.9.1: Mufasa / "Circle of Life" / http-auth@example.org, GET /dir/index.html.
    stored = ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    response = digest_response(
        stored, algorithm, "GET", "/dir/index.html", RFC7616_NONCE, "auth", "00000001",
        RFC7616_CNONCE,
    )  # fmt: skip
    assert response == expected


def test_rfc2617_example_response_is_reproduced() -> None:
    # RFC 2617 §3.5 (the example RFC 3261 §22 builds on).
    stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5")
    response = digest_response(
        stored, "MD5", "GET", "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "auth",
        "00000001", "0a4f113b",
    )  # fmt: skip
    assert response == "6629fae49393a05397450978507c4ef1"


def test_rfc7616_example_authorization_parses_into_its_parameters() -> None:
    value = (
        'Digest username="Mufasa",\r\n    realm="http-auth@example.org",\r\n'
        '    uri="/dir/index.html",\r\n    algorithm=SHA-256,\r\n    nonce="' + RFC7616_NONCE
        + '",\r\n    nc=00000001,\r\n    cnonce="' + RFC7616_CNONCE + '",\r\n    qop=auth,\r\n'
        '    response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",\r\n'
        '    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )  # fmt: skip
    credentials = parse_authorization(value)
    assert credentials.username == "Mufasa"
    assert credentials.realm == "http-auth@example.org"
    assert credentials.uri == "/dir/index.html"
    assert credentials.algorithm == "SHA-256"
    assert credentials.nonce == RFC7616_NONCE
    assert credentials.nc == "00000001"
    assert credentials.cnonce == RFC7616_CNONCE
    assert credentials.qop == "auth"
    assert credentials.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_ha1_matches_independent_hash_for_each_algorithm() -> None:
    for algorithm in ("MD5", "SHA-256"):
        assert ha1("1001", REALM, "pw1001", algorithm) == _hex(algorithm, f"1001:{REALM}:pw1001")
    assert ha1("1001", REALM, "pw1001", "MD5-sess") == ha1("1001", REALM, "pw1001", "MD5")
    with pytest.raises(AuthError):
        ha1("1001", REALM, "pw1001", "CRC32")


# --- parsing -------------------------------------------------------------------------------


def test_parse_handles_any_order_case_spaces_escapes_and_unknown_params() -> None:
    value = (
        'dIgEsT  NONCE = "abc" ,REALM="r\\"x" ,  Uri="sip:a@b;x=\\\\y",X-Unknown=whatever,'
        'Response="ABCDEF0123" , USERNAME="al\\ice", QoP="auth", NC="0000000A", cnonce=xyz,,'
        " Algorithm=sha-256"
    )
    credentials = parse_authorization(value)
    assert credentials.username == "alice"
    assert credentials.realm == 'r"x'
    assert credentials.uri == "sip:a@b;x=\\y"
    assert credentials.nonce == "abc"
    assert credentials.response == "abcdef0123"
    assert credentials.algorithm == "SHA-256"
    assert credentials.qop == "auth"
    assert credentials.nc == "0000000A"
    assert credentials.cnonce == "xyz"
    assert credentials.opaque is None


def test_parse_defaults_algorithm_to_md5_and_allows_no_qop() -> None:
    credentials = parse_authorization(
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="00ff"'
    )
    assert credentials.algorithm == "MD5"
    assert credentials.qop is None and credentials.nc is None and credentials.cnonce is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        "Basic dXNlcjpwYXNz",
        'Digest username="u", realm="r", nonce="n", uri="sip:r"',  # no response
        'Digest username="u" realm="r", nonce="n", uri="sip:r", response="00"',  # no comma
        'Digest username="u, realm="r", nonce="n", uri="sip:r", response="00"',  # open quote
        'Digest username="u", username="v", realm="r", nonce="n", uri="sip:r", response="00"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="zz"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="00", qop=auth',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="00", qop=auth, '
        'nc=1, cnonce="c"',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="00", userhash=true',
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="00", =x',
    ],
)
def test_parse_rejects_malformed_credentials(value: str) -> None:
    with pytest.raises(AuthError):
        parse_authorization(value)


# --- challenge -----------------------------------------------------------------------------


def test_challenge_lists_one_value_per_algorithm_in_configured_order() -> None:
    server = make_server(algorithms=("MD5", "SHA-256"))
    values = server.challenge(now=10.0)
    assert [challenge_param(v, "algorithm") for v in values] == ["MD5", "SHA-256"]
    assert all(v.startswith('Digest realm="hotline.test", nonce="') for v in values)
    assert all(challenge_param(v, "qop") == "auth" for v in values)
    assert all(challenge_param(v, "stale") is None for v in values)
    # one nonce shared by the alternatives
    assert len({challenge_param(v, "nonce") for v in values}) == 1

    reordered = make_server(algorithms=("SHA-256", "MD5")).challenge(now=10.0)
    assert [challenge_param(v, "algorithm") for v in reordered] == ["SHA-256", "MD5"]


def test_challenge_marks_stale_and_can_restrict_algorithms() -> None:
    server = make_server()
    values = server.challenge(now=10.0, stale=True, algorithms=["sha-256"])
    assert len(values) == 1
    assert challenge_param(values[0], "algorithm") == "SHA-256"
    assert challenge_param(values[0], "stale") == "true"
    with pytest.raises(ValueError):
        make_server(algorithms=("MD5",)).challenge(now=10.0, algorithms=["SHA-256"])


def test_challenge_nonces_are_fresh_each_time() -> None:
    server = make_server()
    nonces = {challenge_param(server.challenge(now=10.0)[0], "nonce") for _ in range(50)}
    assert len(nonces) == 50


def test_challenge_without_qop_offers_rfc2069_style() -> None:
    value = make_server(qop="").challenge(now=1.0)[0]
    assert challenge_param(value, "qop") is None


def test_server_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError):
        DigestServer(b"short", REALM)
    with pytest.raises(ValueError):
        DigestServer(SECRET, REALM, algorithms=("SHA-1",))
    with pytest.raises(ValueError):
        DigestServer(SECRET, REALM, algorithms=())
    with pytest.raises(ValueError):
        DigestServer(SECRET, REALM, qop="auth-int")
    with pytest.raises(ValueError):
        DigestServer(SECRET, "")


# --- verification --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "MD5-sess", "SHA-256-sess"])
def test_challenge_verify_round_trip_succeeds(algorithm: str) -> None:
    server = make_server(algorithms=(algorithm,))
    challenge = server.challenge(now=100.0)[0]
    result = server.verify(authorization(challenge), "REGISTER", 101.0, LOOKUP)
    assert result.ok
    assert result.username == "1001"
    assert not result.stale
    assert result.credentials is not None and result.credentials.uri == URI


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_response_without_qop_is_accepted_once(algorithm: str) -> None:
    server = make_server(algorithms=(algorithm,), qop="")
    challenge = server.challenge(now=0.0)[0]
    value = authorization(challenge, nc=None)
    assert server.verify(value, "REGISTER", 1.0, LOOKUP).ok
    again = server.verify(value, "REGISTER", 2.0, LOOKUP)
    assert not again.ok and again.stale
    # and the consumed nonce cannot be revived with qop either
    with_qop = server.verify(authorization(challenge, nc=5), "REGISTER", 3.0, LOOKUP)
    assert not with_qop.ok and with_qop.stale


def test_lookup_receives_base_algorithm_for_sess_variants() -> None:
    calls: list[tuple[str, str]] = []
    server = make_server(algorithms=("SHA-256-sess",))
    challenge = server.challenge(now=0.0)[0]
    assert server.verify(authorization(challenge), "REGISTER", 1.0, lookup_factory(calls)).ok
    assert calls == [("1001", "SHA-256")]


def test_wrong_password_fails_without_stale() -> None:
    server = make_server()
    challenge = server.challenge(now=0.0)[0]
    result = server.verify(authorization(challenge, password="nope"), "REGISTER", 1.0, LOOKUP)
    assert not result.ok and not result.stale
    assert result.username == "1001"


def test_method_is_part_of_the_digest() -> None:
    server = make_server()
    challenge = server.challenge(now=0.0)[0]
    value = authorization(challenge, method="INVITE")
    assert not server.verify(value, "REGISTER", 1.0, LOOKUP).ok
    assert server.verify(value, "INVITE", 1.0, LOOKUP).ok


def test_expired_nonce_with_correct_response_is_stale() -> None:
    server = make_server(nonce_lifetime=300.0)
    challenge = server.challenge(now=1000.0)[0]
    assert server.verify(authorization(challenge, nc=1), "REGISTER", 1300.0, LOOKUP).ok
    result = server.verify(authorization(challenge, nc=2), "REGISTER", 1300.5, LOOKUP)
    assert not result.ok and result.stale
    assert result.username == "1001"


def test_expired_nonce_with_wrong_response_is_not_stale() -> None:
    # RFC 7616 §3.3: stale only when the digest itself was valid.
    server = make_server(nonce_lifetime=300.0)
    challenge = server.challenge(now=0.0)[0]
    value = authorization(challenge, password="nope")
    result = server.verify(value, "REGISTER", 1000.0, LOOKUP)
    assert not result.ok and not result.stale


def test_nonce_from_the_future_after_clock_reset_is_stale() -> None:
    server = make_server()
    challenge = server.challenge(now=5000.0)[0]
    result = server.verify(authorization(challenge), "REGISTER", 10.0, LOOKUP)
    assert not result.ok and result.stale


def test_tampered_nonce_is_refused_without_stale() -> None:
    server = make_server()
    nonce = challenge_param(server.challenge(now=0.0)[0], "nonce")
    assert nonce is not None
    # change the timestamp bytes (make the nonce look younger) keeping a valid encoding
    flipped = ("B" if nonce[0] == "A" else "A") + nonce[1:]
    tampered_challenge = f'Digest realm="{REALM}", nonce="{flipped}", algorithm=MD5'
    result = server.verify(authorization(tampered_challenge), "REGISTER", 1.0, LOOKUP)
    assert not result.ok and not result.stale
    for bogus in ("", "x" * 43, "not-base64!" * 4, nonce + "A"):
        forged = f'Digest realm="{REALM}", nonce="{bogus}", algorithm=MD5'
        result = server.verify(authorization(forged), "REGISTER", 1.0, LOOKUP)
        assert not result.ok and not result.stale


def test_nonce_from_another_secret_is_refused() -> None:
    other = DigestServer(b"another secret of enough length", REALM)
    challenge = other.challenge(now=0.0)[0]
    result = make_server().verify(authorization(challenge), "REGISTER", 1.0, LOOKUP)
    assert not result.ok and not result.stale


def test_replayed_or_lower_nonce_count_is_refused() -> None:
    server = make_server()
    challenge = server.challenge(now=0.0)[0]
    assert server.verify(authorization(challenge, nc=1), "REGISTER", 1.0, LOOKUP).ok
    replay = server.verify(authorization(challenge, nc=1), "REGISTER", 2.0, LOOKUP)
    assert not replay.ok and replay.stale
    assert server.verify(authorization(challenge, nc=3), "REGISTER", 3.0, LOOKUP).ok
    lower = server.verify(authorization(challenge, nc=2), "REGISTER", 4.0, LOOKUP)
    assert not lower.ok and lower.stale
    assert server.verify(authorization(challenge, nc=4), "REGISTER", 5.0, LOOKUP).ok


def test_failed_attempts_do_not_consume_nonce_counts() -> None:
    server = make_server()
    challenge = server.challenge(now=0.0)[0]
    bad = authorization(challenge, nc=1, password="nope")
    assert not server.verify(bad, "REGISTER", 1.0, LOOKUP).ok
    assert server.tracked_nonces == 0
    assert server.verify(authorization(challenge, nc=1), "REGISTER", 2.0, LOOKUP).ok


def test_wrong_realm_is_refused() -> None:
    server = make_server()
    challenge = server.challenge(now=0.0)[0]
    result = server.verify(authorization(challenge, realm="other.realm"), "REGISTER", 1.0, LOOKUP)
    assert not result.ok and not result.stale and result.reason == "wrong realm"


def test_algorithm_not_offered_is_refused() -> None:
    server = make_server(algorithms=("MD5",))
    nonce = challenge_param(server.challenge(now=0.0)[0], "nonce")
    sha = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=SHA-256'
    result = server.verify(authorization(sha), "REGISTER", 1.0, LOOKUP)
    assert not result.ok and not result.stale


def test_unsupported_qop_and_sess_without_qop_are_refused() -> None:
    server = make_server(algorithms=("MD5", "MD5-sess"))
    challenge = server.challenge(now=0.0)[0]
    value = authorization(challenge).replace("qop=auth", "qop=auth-int")
    assert not server.verify(value, "REGISTER", 1.0, LOOKUP).ok
    sess = server.challenge(now=0.0)[1]
    assert not server.verify(authorization(sess, nc=None), "REGISTER", 1.0, LOOKUP).ok


def test_malformed_authorization_gives_failed_result_not_exception() -> None:
    result = make_server().verify('Digest username="x"', "REGISTER", 1.0, LOOKUP)
    assert not result.ok and not result.stale and result.username is None
    assert result.credentials is None


def test_unknown_user_is_indistinguishable_from_wrong_password() -> None:
    calls: list[tuple[str, str]] = []
    server = make_server()
    lookup = lookup_factory(calls)
    # the challenge cannot depend on the user: it takes no user at all and has the same shape
    first, second = server.challenge(now=0.0), server.challenge(now=0.0)
    strip = [v.replace(challenge_param(v, "nonce") or "", "N") for v in first + second]
    assert strip[:2] == strip[2:]

    for now in (1.0, 10_000.0):  # fresh and expired nonce
        known = server.verify(
            authorization(first[0], username="1001", password="guess"), "REGISTER", now, lookup
        )
        unknown = server.verify(
            authorization(first[0], username="9999", password="guess"), "REGISTER", now, lookup
        )
        assert (known.ok, known.stale, known.reason) == (unknown.ok, unknown.stale, unknown.reason)
        assert known.username == "1001" and unknown.username is None
    # both paths looked the user up (same work for both)
    assert [name for name, _ in calls] == ["1001", "9999", "1001", "9999"]


def test_replay_table_prunes_expired_nonces() -> None:
    server = make_server(nonce_lifetime=10.0)
    for i in range(20):
        challenge = server.challenge(now=float(i))[0]
        assert server.verify(authorization(challenge), "REGISTER", float(i), LOOKUP).ok
    # only nonces issued within the last lifetime are still remembered
    assert server.tracked_nonces <= 11


def test_replay_table_cap_keeps_evicted_nonces_unusable() -> None:
    server = make_server(max_tracked_nonces=2)
    challenges = [server.challenge(now=float(i))[0] for i in range(3)]
    for i, challenge in enumerate(challenges):
        assert server.verify(authorization(challenge, nc=1), "REGISTER", 10.0 + i, LOOKUP).ok
    assert server.tracked_nonces == 2
    # the first nonce was evicted: a replay or a continuation is stale, never accepted
    replay = server.verify(authorization(challenges[0], nc=1), "REGISTER", 20.0, LOOKUP)
    assert not replay.ok and replay.stale
    onward = server.verify(authorization(challenges[0], nc=2), "REGISTER", 20.0, LOOKUP)
    assert not onward.ok and onward.stale
    # tracked ones continue normally, and new nonces work
    assert server.verify(authorization(challenges[2], nc=2), "REGISTER", 21.0, LOOKUP).ok
    fresh = server.challenge(now=30.0)[0]
    assert server.verify(authorization(fresh), "REGISTER", 31.0, LOOKUP).ok


# --- properties ----------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x24F), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parse_never_raises_anything_but_auth_error(value: str) -> None:
    try:
        credentials = parse_authorization(value)
    except AuthError:
        return
    assert isinstance(credentials, DigestCredentials)


@settings(max_examples=100, deadline=None)
@given(
    username=_TEXT,
    realm=_TEXT,
    uri=_TEXT,
    order=st.permutations(["username", "realm", "nonce", "uri", "response", "qop", "x-y"]),
    spaces=st.lists(st.sampled_from(["", " ", "\t", "\r\n "]), min_size=14, max_size=14),
)
def test_parse_recovers_any_quoted_values_in_any_order(
    username: str, realm: str, uri: str, order: list[str], spaces: list[str]
) -> None:
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    values = {
        "username": quote(username),
        "realm": quote(realm),
        "nonce": quote("n0nce"),
        "uri": quote(uri),
        "response": "ABCDEF",
        "qop": 'auth, nc=00000001, cnonce="c"',
        "x-y": quote("ignored, really"),
    }
    parts = [
        f"{name}{spaces[2 * i]}={spaces[2 * i + 1]}{values[name]}" for i, name in enumerate(order)
    ]
    credentials = parse_authorization("Digest " + " ,".join(parts))
    assert (credentials.username, credentials.realm, credentials.uri) == (username, realm, uri)
    assert credentials.response == "abcdef" and credentials.nc == "00000001"


def test_parse_is_linear_on_pathological_input() -> None:
    value = 'Digest username="' + "\\a" * 50_000 + '", realm="' + "x" * 100_000
    with pytest.raises(AuthError):
        parse_authorization(value)
