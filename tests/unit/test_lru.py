"""The one bounded LRU map behind the in-process caches."""

from __future__ import annotations

from registryd.lru import Lru


def test_least_recently_used_goes_first_and_is_handed_to_on_evict() -> None:
    evicted: list[str] = []
    lru: Lru[str, str] = Lru(2, on_evict=evicted.append)
    lru.put("a", "A")
    lru.put("b", "B")
    assert lru.get("a") == "A"  # a is now more recent than b
    lru.put("c", "C")
    assert evicted == ["B"]
    assert ("b" in lru, "a" in lru, "c" in lru) == (False, True, True)


def test_peek_does_not_refresh_and_pop_is_not_an_eviction() -> None:
    evicted: list[str] = []
    lru: Lru[str, str] = Lru(2, on_evict=evicted.append)
    lru.put("a", "A")
    lru.put("b", "B")
    assert lru.peek("a") == "A"
    lru.put("c", "C")  # a was only peeked at: it is still the oldest
    assert evicted == ["A"]
    assert lru.pop("b") == "B"
    assert lru.pop("b") is None
    assert evicted == ["A"]
    assert len(lru) == 1


def test_weight_bound_evicts_and_is_kept_exact() -> None:
    lru: Lru[int, bytes] = Lru(100, weight=len, max_weight=10)
    lru.put(1, b"x" * 4)
    lru.put(2, b"x" * 4)
    lru.put(1, b"x" * 2)  # a replace counts only the new value
    assert lru.total_weight == 6
    lru.put(3, b"x" * 6)  # 12 > 10: the oldest (2) goes
    assert [k for k, _ in lru.snapshot()] == [1, 3]
    assert lru.total_weight == 8
    lru.clear()
    assert (len(lru), lru.total_weight) == (0, 0)
