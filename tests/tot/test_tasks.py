"""Task plug-ins: problem validation, the exact game24 checker, rule proposals, prompt parsing, registry."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tree_of_thoughts.tasks import TASKS, Game24, Game24State, Generic, UnknownTaskError, get_task, parse_verdict

game24 = Game24()


def solvable(state: Game24State) -> bool:
    """Exhaustive search over rule proposals, judged only by the exact checker."""
    if game24.is_terminal(state):
        return game24.is_solution(state)
    return any(solvable(step.state) for step in game24.rule_proposals(state))


def state_of(*numbers: Fraction | int) -> Game24State:
    values = tuple(Fraction(n) for n in numbers)
    return Game24State(numbers=values, exprs=tuple(str(n) for n in values))


@pytest.mark.parametrize(
    ("problem", "expected"),
    [("1 1 4 6", True), ("4 9 10 13", True), ("3 3 8 8", True), ("1 1 1 1", False), ("1 1 1 2", False)],
)
def test_game24_exact_checker(problem: str, expected: bool) -> None:
    assert solvable(game24.parse_problem(problem)) is expected


def test_checker_uses_exact_fractions() -> None:
    # 8 / (3 - 8/3) is exactly 24; in floats it is 23.999999999999993.
    assert 8 / (3 - 8 / 3) != 24
    assert game24.is_solution(state_of(Fraction(8) / (3 - Fraction(8, 3))))
    assert not game24.is_dead_end(state_of(8, Fraction(1, 3)))
    assert game24.is_dead_end(state_of(1, 1))
    assert game24.is_dead_end(state_of(23))
    assert not game24.is_dead_end(state_of(1, 1, 1))  # three numbers: left to the evaluator


@pytest.mark.parametrize(
    "problem", ["", "1 2 3", "1 2 3 4 5", "1 2 x 4", "0 1 2 3", "1 2 3 100", "-1 2 3 4", "1.5 2 3 4"]
)
def test_game24_rejects_bad_problems(problem: str) -> None:
    with pytest.raises(ValueError, match="exactly four integers between 1 and 99"):
        game24.parse_problem(problem)


def test_game24_accepts_commas_and_large_numbers() -> None:
    assert game24.render_state(game24.parse_problem("13, 4,99 9")) == "4 9 13 99"


def test_rule_proposals_skip_zero_division_and_commutative_duplicates() -> None:
    steps = game24.rule_proposals(state_of(2, 3))
    results = sorted(step.state.numbers[0] for step in steps)
    # + and * once each, both differences and both quotients.
    assert results == sorted([Fraction(5), Fraction(6), Fraction(-1), Fraction(1), Fraction(2, 3), Fraction(3, 2)])
    zero = game24.rule_proposals(state_of(0, 5))
    # 0+5 and 5-0 collapse, as do 0*5 and 0/5; 5/0 is skipped.
    assert sorted(s.state.numbers[0] for s in zero) == [-5, 0, 5]
    same = game24.rule_proposals(state_of(4, 4))
    assert sorted(s.state.numbers[0] for s in same) == [0, 1, 8, 16]


def test_rule_proposals_cover_all_pairs() -> None:
    steps = game24.rule_proposals(game24.parse_problem("1 2 3 4"))
    assert len({game24.state_key(s.state) for s in steps}) == len(steps)
    assert "left:" in steps[0].thought


def test_state_key_ignores_order_and_history() -> None:
    a = Game24State(numbers=(Fraction(4), Fraction(6)), exprs=("4", "(3 + 3)"))
    b = Game24State(numbers=(Fraction(6), Fraction(4)), exprs=("(2 * 3)", "4"))
    assert game24.state_key(a) == game24.state_key(b)


def test_heuristic_is_exact_only_near_the_end() -> None:
    assert game24.heuristic(state_of(24)) == 1.0
    assert game24.heuristic(state_of(4, 6)) == 1.0
    assert game24.heuristic(state_of(1, 1)) == 0.0
    three = game24.heuristic(state_of(4, 4, 10))
    assert 0.0 < three < 1.0
    assert game24.heuristic(state_of(1, 1, 1)) == 0.1


def test_llm_proposals_are_recomputed_exactly() -> None:
    state = game24.parse_problem("4 9 10 13")
    text = (
        "13 - 9 = 4 (left: 4 4 10)\n"
        "10 \u00d7 4 = 41 (left: 9 13 41)\n"  # wrong arithmetic from the model: we recompute 40
        "7 + 3 = 10 (left: ...)\n"  # operands not available: dropped
        "9 - 13 = -4\n"
        "some prose without a step\n"
        "13 - 9 = 4 (again)\n"  # duplicate state: dropped
    )
    steps = game24.parse_proposals(state, text)
    assert [game24.render_state(s.state) for s in steps] == ["4 4 10", "9 13 40", "-4 4 10"]
    assert steps[0].state.exprs[-1] == "(13 - 9)"


def test_llm_proposal_with_fraction_operand() -> None:
    state = state_of(Fraction(3, 2), 16)
    [step] = game24.parse_proposals(state, "3/2 * 16 = 24 (left: 24)")
    assert game24.is_solution(step.state)


def test_direct_answer_is_a_full_expression() -> None:
    state = state_of(4, 9, 10, 13)
    for thought in ["13 - 9 = 4", "10 - 4 = 6", "4 * 6 = 24"]:
        [step] = game24.parse_proposals(state, thought)
        state = step.state
    assert game24.direct_answer("4 9 10 13", state) == "(13 - 9) * (10 - 4) = 24"
    assert game24.direct_answer("4 9 10 13", state_of(23)) is None


def test_generic_task() -> None:
    generic = Generic()
    assert generic.requires_llm
    with pytest.raises(ValueError, match="must not be empty"):
        generic.parse_problem("   ")
    state = generic.parse_problem("Plan a trip")
    steps = generic.parse_proposals(state, "1. Pick a city\n- Book a hotel\n\nStep 3: Final answer: Paris")
    assert [s.thought for s in steps] == ["Pick a city", "Book a hotel", "Final answer: Paris"]
    assert generic.is_terminal(steps[2].state) and not generic.is_terminal(steps[0].state)
    assert generic.direct_answer("Plan a trip", steps[2].state) == "Paris"
    assert generic.state_key(steps[0].state) == generic.state_key(
        generic.parse_proposals(state, "pick  A city")[0].state
    )
    assert generic.extract_answer("Final answer: 42\n") == "42"


def test_value_and_vote_parsing() -> None:
    assert parse_verdict("3 * 8 = 24\nsure") == 1.0
    assert parse_verdict("maybe... likely") == 0.5
    assert parse_verdict("Impossible") == 0.0
    assert parse_verdict("score: 7/10") == pytest.approx(0.7)
    assert parse_verdict("no idea") is None
    assert game24.parse_vote("... The best choice is 2", 3) == 1
    assert game24.parse_vote("The best choice is 9", 3) is None
    assert game24.parse_vote("undecided", 3) is None


def test_registry() -> None:
    assert set(TASKS) == {"game24", "generic"}
    assert get_task("game24") is TASKS["game24"]
    with pytest.raises(UnknownTaskError, match="unknown task 'chess'; known tasks: game24, generic"):
        get_task("chess")
    with pytest.raises(ValueError):
        get_task("chess")
