from telepty.pty.scrollback import DEFAULT_SCROLLBACK_BYTES, Scrollback


def test_default_capacity_is_256k() -> None:
    assert Scrollback().capacity == DEFAULT_SCROLLBACK_BYTES == 256 * 1024


def test_keeps_everything_below_capacity() -> None:
    sb = Scrollback(16)
    sb.append(b"hello ")
    sb.append(b"world")
    assert sb.snapshot() == b"hello world"
    assert len(sb) == 11


def test_keeps_only_most_recent_bytes() -> None:
    sb = Scrollback(10)
    data = bytes(range(256)) * 3
    for i in range(0, len(data), 7):
        sb.append(data[i : i + 7])
        assert sb.snapshot() == data[: i + 7][-10:]
        assert len(sb) == min(i + 7, len(data), 10)
    assert sb.total_bytes == len(data)


def test_memory_stays_bounded_by_twice_capacity() -> None:
    sb = Scrollback(1000)
    for _ in range(10_000):
        sb.append(b"x" * 37)
        assert len(sb._buf) <= 2000
    assert len(sb) == 1000


def test_chunk_larger_than_capacity() -> None:
    sb = Scrollback(8)
    sb.append(b"abc")
    sb.append(b"0123456789ABCDEF")
    assert sb.snapshot() == b"89ABCDEF"
    sb.append(b"!")
    assert sb.snapshot() == b"9ABCDEF!"


def test_tail_and_empty_appends() -> None:
    sb = Scrollback(8)
    sb.append(b"")
    assert sb.snapshot() == b"" and len(sb) == 0
    sb.append(b"abcdefghij")
    assert sb.tail(3) == b"hij"
    assert sb.tail(100) == b"cdefghij"
    assert sb.tail(0) == b""
    sb.clear()
    assert sb.snapshot() == b""


def test_snapshot_is_a_copy() -> None:
    sb = Scrollback(8)
    sb.append(b"abc")
    snap = sb.snapshot()
    sb.append(b"def")
    assert snap == b"abc"
