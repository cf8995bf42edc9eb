"""Cross-language peer for tdist-kafka, on confluent-kafka (librdkafka from Python).

produce: writes untraced messages (plain, and ones that begin with tdist's frame magic but
         are not frames) and prints them as JSON hex on stdout.
consume: reads COUNT messages from the beginning of partition 0 and checks each the way a
         Brave consumer would: one `b3` header in single format without a parent. Prints the
         header values and raw payloads as JSON on stdout.
"""
import argparse
import json
import re
import sys
import time
import zlib

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

B3_NO_PARENT = re.compile(r"^([0-9a-f]{16}|[0-9a-f]{32})-[0-9a-f]{16}(-[01d])?$")


def untraced_payloads():
    magic = bytes([0xC1, 0xB3])
    body = bytes([0x02]) + bytes(range(1, 9)) + bytes(range(9, 17))
    # A well-formed version-1 header with a wrong checksum: not a frame.
    bad_crc = magic + b"\x01" + body
    bad_crc += ((zlib.crc32(bad_crc) ^ 1) & 0xFFFFFFFF).to_bytes(4, "big") + b"tail"
    return [
        b'{"comment":"hello from python"}',
        b"",
        magic,
        magic + b"\x01",
        magic + b"\x01\x00" + b"short",
        magic + b"\x02\x00" + bytes(20) + b"unknown version",
        magic + b"\x01\xf0" + bytes(30),
        bad_crc,
        bytes(range(256)),
        "caf\u00e9 \u2603".encode(),
    ]


def produce(args):
    p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 1})
    sent = untraced_payloads()
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(str(err))

    for i, payload in enumerate(sent):
        p.produce(args.topic, value=payload, key=f"py{i}".encode(), on_delivery=report)
    left = p.flush(15)
    if left or errors:
        print(f"produce failed: {left} undelivered, errors {errors}", file=sys.stderr)
        return 1
    json.dump({"payloads": [x.hex() for x in sent]}, sys.stdout)
    return 0


def consume(args):
    c = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "tdist-python-peer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
        }
    )
    c.assign([TopicPartition(args.topic, 0, OFFSET_BEGINNING)])
    out = []
    deadline = time.time() + 30
    while len(out) < args.count and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            print(f"consume error: {m.error()}", file=sys.stderr)
            continue
        headers = m.headers() or []
        b3 = [v for k, v in headers if k.lower() == "b3"]
        problems = []
        if len(b3) != 1:
            problems.append(f"expected one b3 header, got {len(b3)}")
        elif not B3_NO_PARENT.match(b3[-1].decode()):
            problems.append(f"b3 is not Brave's single format without parent: {b3[-1]!r}")
        if any(k.lower().startswith("x-b3-") for k, _ in headers):
            problems.append("unexpected X-B3-* headers")
        out.append(
            {
                "offset": m.offset(),
                "b3": b3[-1].decode() if b3 else None,
                "payload": (m.value() or b"").hex(),
                "problems": problems,
            }
        )
    c.close()
    json.dump({"messages": out}, sys.stdout)
    bad = [m for m in out if m["problems"]]
    if len(out) != args.count or bad:
        print(f"consumed {len(out)}/{args.count}, problems {bad}", file=sys.stderr)
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["produce", "consume"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, default=0)
    args = ap.parse_args()
    return produce(args) if args.mode == "produce" else consume(args)


if __name__ == "__main__":
    sys.exit(main())
