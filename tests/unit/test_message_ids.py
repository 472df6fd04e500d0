"""Default message ids: UUIDv7 layout, time-ordered, unique across threads and forks."""

from __future__ import annotations

import os
import threading
import time
import uuid

from telepty.bus.envelope import MESSAGE_ID_RE, new_message_id


def parts(message_id: str, kind: str) -> tuple[int, bytes]:
    """(milliseconds, the 10 bytes after them) of an id made for ``kind``."""
    prefix = f"{kind}-"
    assert message_id.startswith(prefix)
    raw = uuid.UUID(message_id[len(prefix):]).bytes
    return int.from_bytes(raw[:6], "big"), raw[6:]


def test_an_id_is_the_kind_and_a_version_7_uuid_of_now() -> None:
    before = time.time_ns() // 1_000_000
    mid = new_message_id("build.finished")
    after = time.time_ns() // 1_000_000
    assert MESSAGE_ID_RE.match(mid)
    u = uuid.UUID(mid[len("build.finished-"):])
    assert str(u) == mid[len("build.finished-"):]  # canonical 8-4-4-4-12 lowercase hex
    assert (u.version, u.variant) == (7, uuid.RFC_4122)
    assert before <= parts(mid, "build.finished")[0] <= after


def test_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    made = []
    for _ in range(5):
        first = time.time_ns() // 1_000_000
        while time.time_ns() // 1_000_000 == first:  # into the next millisecond
            pass
        made.append(new_message_id("k"))
    assert made == sorted(made)
    assert [parts(m, "k")[0] for m in made] == sorted({parts(m, "k")[0] for m in made})


def test_threads_never_get_the_same_id() -> None:
    out: list[list[str]] = [[] for _ in range(8)]

    def make(i: int) -> None:
        out[i] = [new_message_id("k") for _ in range(3000)]

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [m for chunk in out for m in chunk]
    assert len(set(ids)) == len(ids) == 8 * 3000
    # and the random parts are distinct too: no two callers were handed the same bytes
    assert len({parts(m, "k")[1] for m in ids}) == len(ids)


def test_a_forked_child_does_not_repeat_its_parents_random_bytes() -> None:
    new_message_id("k")  # the parent has OS randomness buffered
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its ids' random bytes and leave at once
        try:
            os.close(read_end)
            tails = b"".join(parts(new_message_id("k"), "k")[1] for _ in range(50))
            os.write(write_end, tails)
        finally:
            os._exit(0)
    os.close(write_end)
    parent = {parts(new_message_id("k"), "k")[1] for _ in range(50)}
    data = b""
    while chunk := os.read(read_end, 4096):
        data += chunk
    os.close(read_end)
    assert os.waitpid(pid, 0)[1] == 0
    child = {data[i:i + 10] for i in range(0, len(data), 10)}
    assert len(child) == 50
    assert not parent & child
