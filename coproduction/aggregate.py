"""The shape every service's aggregate shares: its tables, its state machine, and the one recipe
for changing it.

A change runs in one transaction: load the row FOR UPDATE, check If-Match, apply the state
machine's transition and the change itself, ``version += 1``, and write the event to the outbox.
A service declares one :class:`Aggregate` per kind of row it changes this way and builds its
commands (``handlers.py``) from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping

from sqlalchemy import JSON, Boolean, DateTime, Integer, MetaData, String, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from .auth import service_caller
from .events import now
from .http import Problem, check_if_match, load_or_404, traceparent
from .idempotency import idempotency_table
from .outbox import emit, outbox_table

#: a JSON column: JSONB on PostgreSQL, JSON text elsewhere
Json = JSON().with_variant(JSONB(), "postgresql")


def service_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The outbox and idempotency-key tables every service keeps beside its own."""
    return outbox_table(metadata), idempotency_table(metadata)


class AggregateRow:
    """The columns of every aggregate table: its id, its version, who made it and when it changed.
    A table whose ``created_at`` (or other column) is indexed declares that column again."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PersonRow(AggregateRow):
    """An aggregate of one person's: the NHS number its events are about, and its state."""

    nhs_number: Mapped[str] = mapped_column(String(10), index=True)
    status: Mapped[str] = mapped_column(String(20))


class Agreement:
    """Who agreed the aggregate with the person, whether the person did, and when."""

    agreed_by: Mapped[str | None] = mapped_column(String(200))
    person_agreed: Mapped[bool | None] = mapped_column(Boolean)
    agreed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def changed_by() -> dict:
    """Who made this change, as events and version histories record it."""
    caller = service_caller()
    return {"client": caller.client_id, "org": caller.org, "role": caller.role}


class IllegalTransition(Problem):
    """An action the current state does not allow: a 409 Conflict whose detail says why and what
    is possible instead (``possible``: the actions the current state allows)."""

    def __init__(self, reason: str, possible: tuple[str, ...] = ()):
        super().__init__(409, "Conflict", reason)
        self.reason = reason
        self.possible = possible


#: (state, action, the actions possible from that state) -> why the action is refused
Refusal = Callable[[str, str, tuple[str, ...]], str]


class StateMachine:
    """state -> {action: next state}, and how a refused action is explained."""

    def __init__(self, transitions: Mapping[str, Mapping[str, str]], refusal: Refusal):
        self.transitions = transitions
        self.refusal = refusal

    def possible(self, state: str) -> tuple[str, ...]:
        return tuple(sorted(self.transitions[state]))

    def next_state(self, state: str, action: str) -> str:
        allowed = self.transitions[state]
        if action not in allowed:
            possible = self.possible(state)
            raise IllegalTransition(self.refusal(state, action, possible), possible)
        return allowed[action]


@dataclass(eq=False)
class Aggregate:
    """One kind of versioned row of a service (a plan, a decision): how it is loaded, moved
    through its states and changed, each change a new version with its event.

    The row has ``id``, ``nhs_number`` (the event's subject), ``status``, ``version`` and
    ``updated_at`` (a model built on :class:`PersonRow` has them all). A service whose change
    records more (a version history, who changed it last) overrides :meth:`bump` or :meth:`emit`.
    """

    service: str
    model: type
    noun: str
    machine: StateMachine
    outbox: Table
    event_data: Callable[..., dict] | None

    def load(self, session: Session, aggregate_id: str, for_update: bool = False):
        return load_or_404(session, self.model, aggregate_id, self.noun, for_update)

    def lock(self, session: Session, aggregate_id: str):
        """The row locked for this transaction, once If-Match names its version: every change starts so."""
        row = self.load(session, aggregate_id, for_update=True)
        check_if_match(row.version)
        return row

    def move(self, row, action: str) -> None:
        """Apply ``action`` to the row's status (IllegalTransition when the state does not allow it)."""
        row.status = self.machine.next_state(row.status, action)

    def bump(self, row, at: datetime | None = None) -> datetime:
        """A new version of the row, changed at ``at`` (now by default)."""
        row.version += 1
        row.updated_at = at or now()
        return row.updated_at

    def emit(self, session: Session, row, type_: str, **details) -> dict:
        """The row's event for its current version, in the outbox of this transaction."""
        session.flush()
        return emit(session, self.outbox, service=self.service, type=type_, subject=row.nhs_number,
                    aggregate_id=row.id, aggregate_version=row.version,
                    data=self.event_data(row, **details), traceparent=traceparent())

    def change(self, session: Session, aggregate_id: str, action: str, type_: str,
               apply: Callable[[object, datetime], None] | None = None, **details) -> tuple[object, dict]:
        """The whole write recipe: lock, If-Match, transition, ``apply(row, at)``, version + 1, event."""
        row = self.lock(session, aggregate_id)
        self.move(row, action)
        at = now()
        if apply is not None:
            apply(row, at)
        self.bump(row, at)
        return row, self.emit(session, row, type_, **details)
