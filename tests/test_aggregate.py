"""The kernel's state machine: a refused action is one 409 that says why and what is possible."""
import pytest

from coproduction.aggregate import IllegalTransition, StateMachine
from coproduction.http import Problem

MACHINE = StateMachine(
    {"open": {"close": "closed", "hold": "held"}, "held": {"close": "closed"}, "closed": {}},
    lambda state, action, possible: f"{state} cannot {action}; possible: {', '.join(possible) or 'nothing'}")


def test_an_allowed_action_gives_the_next_state():
    assert MACHINE.next_state("open", "hold") == "held"
    assert MACHINE.possible("open") == ("close", "hold")


def test_a_refused_action_is_a_409_naming_what_is_possible():
    with pytest.raises(IllegalTransition) as refused:
        MACHINE.next_state("held", "hold")
    assert isinstance(refused.value, Problem) and refused.value.code == 409
    assert refused.value.title == "Conflict" and refused.value.possible == ("close",)
    assert refused.value.detail == "held cannot hold; possible: close"
    with pytest.raises(IllegalTransition) as final:
        MACHINE.next_state("closed", "close")
    assert final.value.possible == () and final.value.detail.endswith("possible: nothing")
