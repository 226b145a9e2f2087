"""Calls the tests make again and again: If-Match headers, expecting a status, a plan made and agreed."""
from __future__ import annotations

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
