"""Micro-benchmarks of digest verification (pytest-benchmark).

Run: ``python -m pytest bench/bench_auth.py --benchmark-only``

Each round verifies a *fresh* Authorization (next nonce count), as a registrar does on a
REGISTER refresh: a replayed value would be refused after the first round and measure the
wrong path.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest

from softswitch.sip.auth import DigestServer, ha1, parse_authorization

REALM = "hotline.test"
URI = "sip:hotline.test"
SECRET = b"benchmark secret, 32 bytes long!"
ROUNDS = 20_000

_HASHERS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _authorization(algorithm: str, nonce: str, nc: int) -> str:
    """A phone's Authorization for user 1001 / pw1001 (computed independently with hashlib)."""
    h = _HASHERS[algorithm]
    a1 = h(f"1001:{REALM}:pw1001".encode()).hexdigest()
    a2 = h(f"REGISTER:{URI}".encode()).hexdigest()
    nc_text = f"{nc:08x}"
    response = h(f"{a1}:{nonce}:{nc_text}:4a3f9c21:auth:{a2}".encode()).hexdigest()
    return (
        f'Digest username="1001",realm="{REALM}",nonce="{nonce}",uri="{URI}",'
        f'response="{response}",algorithm={algorithm},cnonce="4a3f9c21",qop=auth,nc={nc_text}'
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_bench_verify_one_authorization(benchmark, algorithm: str) -> None:
    server = DigestServer(SECRET, REALM, algorithms=(algorithm,), nonce_lifetime=1e9)
    stored = {"1001": ha1("1001", REALM, "pw1001", algorithm)}
    nonce = server.challenge(now=0.0)[0].split('nonce="', 1)[1].split('"', 1)[0]
    values = iter([_authorization(algorithm, nonce, nc) for nc in range(1, ROUNDS + 2)])
    clock = itertools.count(1)

    def lookup(username: str, _algorithm: str) -> str | None:
        return stored.get(username)

    def verify_next():
        return server.verify(next(values), "REGISTER", float(next(clock)), lookup)

    result = benchmark.pedantic(verify_next, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert result.ok


def test_bench_parse_authorization(benchmark) -> None:
    value = _authorization("MD5", "P_AAAAAAAADIWvmFSGvZakHO2cmZIQrwViQf0fQbXGs", 1)
    credentials = benchmark(parse_authorization, value)
    assert credentials.username == "1001"


def test_bench_challenge(benchmark) -> None:
    server = DigestServer(SECRET, REALM)
    values = benchmark(server.challenge, 1.0)
    assert len(values) == 2
