#!/usr/bin/env python3
"""Interop check of the spacenode wire format with independent implementations.

Builds telecommands with the Python `spacepackets` package (PUS-C), protects
them with our documented envelope using `cryptography`'s AES-GCM, frames them
with the `cobs` package and `crc32c`, sends them to a running spacenoded over
its serial port, and parses every telemetry packet the node returns with
`spacepackets` (PusTm, Service1Tm, CdsShortTimestamp).

Prints one JSON object with what it observed; the Rust system test asserts on
it. Exits non-zero on any protocol error.
"""

import argparse
import json
import os
import struct
import sys
import termios
import time
import tty

import cobs.cobs
import crc32c
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss.pus_1_verification import ManagedParamsVerification, Service1Tm
from spacepackets.ecss.tc import PusTc
from spacepackets.ecss.tm import PusTm

UPLINK, DOWNLINK = 1, 2
VERSION = 1


class Link:
    def __init__(self, port, key, key_id, first_seq):
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd, termios.TCSANOW)
        self.aead = AESGCM(key)
        self.key_id = key_id
        self.seq = first_seq
        self.buf = b""
        self.seen_downlink = set()

    def send(self, tc: PusTc) -> None:
        header = bytes([(VERSION << 4) | UPLINK]) + struct.pack(">HQ", self.key_id, self.seq)
        nonce = struct.pack(">IQ", UPLINK, self.seq)
        self.seq += 1
        envelope = header + self.aead.encrypt(nonce, bytes(tc.pack()), header)
        body = envelope + struct.pack("<I", crc32c.crc32c(envelope))
        os.write(self.fd, b"\0" + cobs.cobs.encode(body) + b"\0")

    def frames(self, deadline):
        while time.monotonic() < deadline:
            while b"\0" in self.buf:
                run, self.buf = self.buf.split(b"\0", 1)
                if not run:
                    continue
                try:
                    body = cobs.cobs.decode(run)
                except cobs.cobs.DecodeError:
                    continue
                if len(body) < 4 or struct.unpack("<I", body[-4:])[0] != crc32c.crc32c(body[:-4]):
                    continue
                yield body[:-4]
            import select

            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                self.buf += os.read(self.fd, 4096)

    def tm(self, deadline):
        for envelope in self.frames(deadline):
            header = envelope[:11]
            ver_dir, key_id, seq = header[0], *struct.unpack(">HQ", header[1:11])
            if ver_dir != (VERSION << 4) | DOWNLINK or key_id != self.key_id:
                raise SystemExit(f"unexpected envelope header {header.hex()}")
            if seq in self.seen_downlink:
                raise SystemExit(f"downlink sequence {seq} repeated")
            self.seen_downlink.add(seq)
            plain = self.aead.decrypt(struct.pack(">IQ", DOWNLINK, seq), envelope[11:], header)
            yield PusTm.unpack(plain, timestamp_len=PusTm.CDS_SHORT_SIZE)


def exchange(link, tc, wait=5.0):
    """Sends tc; returns (verification reports for it, other TM) until completion or failure."""
    req = struct.unpack(">I", bytes(tc.pack()[:4]))[0]
    link.send(tc)
    reports, others = [], []
    for tm in link.tm(time.monotonic() + wait):
        if tm.service == 1:
            v = Service1Tm.from_tm(tm, ManagedParamsVerification(bytes_err_code=2))
            if v.tc_req_id.as_u32() != req:
                continue
            reports.append(v)
            if v.message_subtype in (2, 8) or v.message_subtype == 7:
                return reports, others
        else:
            others.append(tm)
    raise SystemExit(f"no completion for request 0x{req:08x}")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", required=True)
    p.add_argument("--key", required=True, help="hex AES-256 key")
    p.add_argument("--key-id", type=int, default=1)
    p.add_argument("--first-seq", type=int, default=1)
    a = p.parse_args()
    link = Link(a.port, bytes.fromhex(a.key), a.key_id, a.first_seq)
    out = {}

    ping = PusTc(service=17, message_subtype=1, apid=0x010, seq_count=100, source_id=5, ack_flags=0b1001)
    reports, others = exchange(link, ping)
    pong = [t for t in others if (t.service, t.message_subtype) == (17, 2)]
    stamp = CdsShortTimestamp.unpack(pong[0].timestamp) if pong else None
    out["ping"] = {
        "subtypes": [r.message_subtype for r in reports],
        "pong": len(pong),
        "pong_dest_id": pong[0].pus_tm_sec_header.dest_id if pong else None,
        "pong_apid": pong[0].apid if pong else None,
        "pong_time_skew_s": abs(stamp.as_unix_seconds() - time.time()) if stamp else None,
    }

    hk_tc = PusTc(service=3, message_subtype=27, apid=0x011, seq_count=101, source_id=5, app_data=bytes([1, 1]))
    reports, others = exchange(link, hk_tc)
    hk = [t for t in others if (t.service, t.message_subtype) == (3, 25)]
    data = hk[0].source_data if hk else b""
    out["hk"] = {
        "subtypes": [r.message_subtype for r in reports],
        "structure_id": data[0] if data else None,
        "uptime_s": struct.unpack(">I", data[1:5])[0] if len(data) >= 5 else None,
        "boot_count": struct.unpack(">I", data[5:9])[0] if len(data) >= 9 else None,
        "mode": data[9] if len(data) >= 10 else None,
    }

    bad = PusTc(service=17, message_subtype=1, apid=0x010, seq_count=102, source_id=5, app_data=b"\x00")
    reports, _ = exchange(link, bad)
    fail = [r for r in reports if r.message_subtype == 2]
    out["refused"] = {
        "subtypes": [r.message_subtype for r in reports],
        "code": fail[0].failure_notice.code.val if fail else None,
    }

    unknown = PusTc(service=200, message_subtype=9, apid=0x010, seq_count=103, source_id=5)
    reports, _ = exchange(link, unknown)
    fail = [r for r in reports if r.message_subtype == 2]
    out["unknown_service"] = {"code": fail[0].failure_notice.code.val if fail else None}
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
