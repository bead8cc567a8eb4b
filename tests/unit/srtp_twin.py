"""A pure-Python SRTP/SRTCP (RFC 3711) written from the RFC, the C engine's independent twin.

AES in counter mode and HMAC-SHA1 come from `cryptography` and `hmac`; the key derivation
(§4.3.1), the IV (§4.1.1), the packet index with its rollover counter (§3.3.1) and the
SRTCP index and E flag (§3.4) are written here. Default key derivation rate 0, no MKI.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SALT_LEN = 14


def aes_cm(key: bytes, iv: int, length: int) -> bytes:
    """The AES counter-mode keystream from the 128-bit counter block `iv` (§4.1.1)."""
    counter = iv.to_bytes(16, "big")
    encryptor = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    return encryptor.update(bytes(length)) + encryptor.finalize()


def derive(master: bytes, label: int, length: int) -> bytes:
    """A session key (§4.3.1): x = (label ‖ r) XOR master salt, r = 0; keystream at x·2^16."""
    key, salt = master[:-SALT_LEN], master[-SALT_LEN:]
    x = int.from_bytes(salt, "big") ^ (label << 48)
    return aes_cm(key, x << 16, length)


class Context:
    """One direction of one SSRC's stream: the sender's or the receiver's copy."""

    def __init__(self, master: bytes, tag_len: int = 10, rtcp_tag_len: int = 10) -> None:
        key_len = len(master) - SALT_LEN
        self.keys = {
            "rtp": (derive(master, 0, key_len), derive(master, 1, 20), derive(master, 2, 14)),
            "rtcp": (derive(master, 3, key_len), derive(master, 4, 20), derive(master, 5, 14)),
        }
        self.tag_len = tag_len
        self.rtcp_tag_len = rtcp_tag_len
        self.roc = 0
        self.last_seq: int | None = None
        self.rtcp_index = 0

    @staticmethod
    def _iv(salt: bytes, ssrc: int, index: int) -> int:
        return (int.from_bytes(salt, "big") << 16) ^ (ssrc << 64) ^ (index << 16)

    def _index(self, seq: int) -> int:
        # §3.3.1, sender side: the ROC grows when the sequence number wraps.
        if self.last_seq is not None and seq < self.last_seq and self.last_seq - seq > 0x8000:
            self.roc += 1
        self.last_seq = seq
        return (self.roc << 16) | seq

    def protect(self, packet: bytes) -> bytes:
        seq, ssrc = struct.unpack("!H", packet[2:4])[0], struct.unpack("!I", packet[8:12])[0]
        header = packet[:12]  # no CSRC, no extension in the packets of these tests
        index = self._index(seq)
        enc_key, auth_key, salt = self.keys["rtp"]
        stream = aes_cm(enc_key, self._iv(salt, ssrc, index), len(packet) - 12)
        body = header + bytes(a ^ b for a, b in zip(packet[12:], stream, strict=True))
        tag = hmac.new(auth_key, body + struct.pack("!I", self.roc), hashlib.sha1).digest()
        return body + tag[: self.tag_len]

    def unprotect(self, packet: bytes) -> bytes:
        """Verify and decrypt (ROC taken as the current one: short test streams)."""
        body, tag = packet[: -self.tag_len], packet[-self.tag_len :]
        enc_key, auth_key, salt = self.keys["rtp"]
        want = hmac.new(auth_key, body + struct.pack("!I", self.roc), hashlib.sha1).digest()
        if not hmac.compare_digest(want[: self.tag_len], tag):
            raise ValueError("SRTP authentication failed")
        seq, ssrc = struct.unpack("!H", body[2:4])[0], struct.unpack("!I", body[8:12])[0]
        stream = aes_cm(enc_key, self._iv(salt, ssrc, (self.roc << 16) | seq), len(body) - 12)
        return body[:12] + bytes(a ^ b for a, b in zip(body[12:], stream, strict=True))

    def protect_rtcp(self, packet: bytes) -> bytes:
        ssrc = struct.unpack("!I", packet[4:8])[0]
        self.rtcp_index += 1
        index = self.rtcp_index
        enc_key, auth_key, salt = self.keys["rtcp"]
        stream = aes_cm(enc_key, self._iv(salt, ssrc, index), len(packet) - 8)
        body = packet[:8] + bytes(a ^ b for a, b in zip(packet[8:], stream, strict=True))
        body += struct.pack("!I", 0x80000000 | index)  # E flag: encrypted (§3.4)
        tag = hmac.new(auth_key, body, hashlib.sha1).digest()
        return body + tag[: self.rtcp_tag_len]

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        body, tag = packet[: -self.rtcp_tag_len], packet[-self.rtcp_tag_len :]
        enc_key, auth_key, salt = self.keys["rtcp"]
        if not hmac.compare_digest(
            hmac.new(auth_key, body, hashlib.sha1).digest()[: self.rtcp_tag_len], tag
        ):
            raise ValueError("SRTCP authentication failed")
        word = struct.unpack("!I", body[-4:])[0]
        body = body[:-4]
        if not word & 0x80000000:
            return body
        ssrc = struct.unpack("!I", body[4:8])[0]
        stream = aes_cm(enc_key, self._iv(salt, ssrc, word & 0x7FFFFFFF), len(body) - 8)
        return body[:8] + bytes(a ^ b for a, b in zip(body[8:], stream, strict=True))
