"""Calls the tests make again and again: If-Match headers, expecting a status, a plan made and agreed,
the same call made many times at once."""
from __future__ import annotations

import threading

from bodies import AGREEMENT


def if_match(version) -> dict:
    return {"If-Match": f'"{version}"'}


def expect(r, status: int = 200) -> dict:
    """The body of response ``r``, which must have ``status``."""
    assert r.status_code == status, f"{r.status_code} {r.text}"
    return r.json()


def agree(platform, plan: dict, role: str = "gp") -> dict:
    """``plan`` agreed by Dr A Patel with the person; the agreed plan."""
    return expect(platform.call(role, "POST", f"/v1/plans/{plan['id']}/agree", headers=if_match(plan["version"]),
                                json=AGREEMENT))


def create_plan(platform, body: dict, agreed: bool = True, role: str = "gp") -> dict:
    """The plan ``body`` describes, created (and agreed unless ``agreed=False``)."""
    plan = expect(platform.call(role, "POST", "/v1/plans", json=body), 201)
    return agree(platform, plan, role) if agreed else plan


def race(n: int, call) -> list:
    """``call(i)`` for each i in range(n), each in a thread of its own and released together; the
    results in order of i."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results
