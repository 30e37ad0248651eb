"""The core under hostile numbers and types (issue 18, "The core"): finite but huge inputs never
come back as NaN or inf, they raise ReproError naming the input that drove the overflow; and a
bool is never taken as an integer, in the NumPy API or in the extension underneath it."""

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import repro_core as rc
from repro_core import _core
from repro_core._api import check_options
from test_parity import adv_inputs

ESTIMATORS = ["grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"]
ADV_POSITIONAL = ("estimator", "outcome_rewards", "step_rewards", "offsets", "positions",
                  "response_mask", "group_index")
F64_MAX = np.finfo(np.float64).max


def batch(estimator, **changes):
    """Two completions of length 3 in one group, a process reward on token 1 of each."""
    x = dict(
        outcome_rewards=np.array([1.0, 0.0]),
        step_rewards=np.array([0.0, 0.5, 0.0, -0.5]),
        offsets=np.array([0, 2, 4]),
        positions=np.array([0, 2, 0, 2]),
        response_mask=np.ones((2, 3), dtype=bool),
        group_index=np.array([0, 0]),
        values=np.zeros((2, 3)) if estimator == "ppo" else None,
    )
    x.update(changes)
    return x


def advantages(estimator, **changes):
    x = batch(estimator, **changes)
    return rc.compute_advantages(estimator, *[x.pop(a) for a in ADV_POSITIONAL[1:]], **x)


def refused(argument, fn, *args, **kw):
    with pytest.raises(rc.ReproError) as info:
        fn(*args, **kw)
    assert info.value.argument == argument, str(info.value)
    return str(info.value)


def all_finite(result):
    outputs = [result.advantages] + ([] if result.returns is None else [result.returns])
    return all(np.isfinite(a).all() for a in outputs)


# ----------------------------------------------------------------------- huge but finite inputs


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_huge_outcome_rewards_are_refused(estimator):
    # Before: NaN or inf advantages, or (grpo) an infinite std that silently zeroed the outcome part.
    message = refused("outcome_rewards", advantages, estimator, outcome_rewards=np.array([1e308, -1e308]))
    assert "1e+308" in message or "1e308" in message


def test_outcome_rewards_beyond_float32_are_refused():
    # Finite in float64, inf once written as float32: dr_grpo does not divide by the group's std.
    message = refused("outcome_rewards", advantages, "dr_grpo", outcome_rewards=np.array([0.0, 1e39]))
    assert "at row 1" in message
    assert all_finite(advantages("grpo", outcome_rewards=np.array([0.0, 1e39])))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_huge_step_rewards_are_refused(estimator):
    refused("step_rewards", advantages, estimator, step_rewards=np.array([0.0, 1e308, 0.0, -1e308]))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_huge_alpha_is_refused(estimator):
    message = refused("alpha", advantages, estimator, alpha=1e308)
    assert "float32" in message
    assert all_finite(advantages(estimator, alpha=1e30)), "large but in range"


def test_huge_values_are_refused():
    values = np.array([[0.0, 0.0, 0.0], [1e308, -1e308, 1e308]])
    refused("values", advantages, "ppo", values=values)
    beyond_float32 = np.array([[0.0, 1e39, 0.0], [0.0, 0.0, 0.0]])
    refused("values", advantages, "ppo", values=beyond_float32, critic_target="advantages")


@pytest.mark.parametrize("estimator", ["ppo", "reinforce_pp"])
def test_huge_token_rewards_are_refused(estimator):
    # Three tokens of 1e308 summed: the returns overflow.
    refused("token_rewards", advantages, estimator, token_rewards=np.full((2, 3), 1e308))


BLOWN_UP = ("outcome_rewards", "step_rewards", "values", "token_rewards", "alpha")


@given(adv_inputs(max_b=5, max_t=8), st.data())
def test_finite_inputs_give_finite_outputs_or_name_the_input(x, data):
    """For finite inputs, some scaled towards float64's limit: all-finite outputs, or a
    ReproError that names one of the inputs scaled up."""
    x = dict(x)
    x.pop("lengths")
    present = [name for name in BLOWN_UP if x.get(name) is not None]
    scaled = data.draw(st.lists(st.sampled_from(present), unique=True, max_size=3))
    for name in scaled:
        factor = data.draw(st.sampled_from([1e20, 1e38, 1e39, 1e154, 1e300, 1e307, F64_MAX]))
        with np.errstate(all="ignore"):
            if name == "alpha":
                x[name] = -factor if x[name] < 0 else factor
            else:
                # float64, so that the values stay finite; NaN and inf padding outside the mask stay as they are
                value = np.asarray(x[name], dtype=np.float64)
                inside = np.isfinite(value)
                x[name] = np.where(inside, np.clip(value * factor, -F64_MAX, F64_MAX), value)
    try:
        result = rc.compute_advantages(*[x.pop(a) for a in ADV_POSITIONAL], **x)
    except rc.ReproError as error:
        assert error.argument in scaled, f"{error} (scaled: {scaled})"
        event(f"refused, naming {error.argument}")
        return
    assert all_finite(result), f"non-finite outputs (scaled: {scaled})"
    event("finite outputs")


@given(
    st.lists(st.lists(st.floats(-F64_MAX, 0.0), max_size=8), min_size=1, max_size=4),
    st.floats(0.0, 1.0),
    st.one_of(st.none(), st.floats(5e-324, 1.0)),
)
def test_score_steps_outputs_are_finite_for_any_finite_j(rows, w, stability_ema):
    j_values = np.array([j for row in rows for j in row], dtype=np.float64)
    offsets = np.concatenate([[0], np.cumsum([len(row) for row in rows])])
    steps = rc.score_steps(j_values, offsets, w=w, stability_ema=stability_ema)
    for name in ("magnitude", "stability", "score", "reward"):
        assert np.isfinite(getattr(steps, name)).all(), name


# ----------------------------------------------------------------------- bool is not an integer


def cut_inputs():
    ids = np.array([[1, 7, 2, 7, 3, 9]])
    return ids, np.ones(ids.shape, dtype=bool), np.linspace(0.0, 1.0, ids.size).reshape(ids.shape)


BOOLS = [True, False, np.True_, np.False_]


@pytest.mark.parametrize("flag", BOOLS, ids=repr)
def test_bool_is_no_integer_in_the_api(flag):
    ids, mask, entropies = cut_inputs()
    refused("k", rc.select_cuts, ids, mask, entropies, delimiters=[7], k=flag)
    refused("think_end_id", rc.select_cuts, ids, mask, entropies, delimiters=[7], think_end_id=flag)
    refused("think_end_id", rc.segment_paragraphs, ids, mask, delimiters=[7], think_end_id=flag)
    refused("k", check_options, k=flag)


@pytest.mark.parametrize("flag", BOOLS, ids=repr)
def test_bool_is_no_integer_in_the_extension(flag):
    # Before: k=True and think_end_id=True were read as 1 (bool is an int to Python), np.True_ a TypeError.
    ids, mask, entropies = cut_inputs()
    table = _core.DelimiterTable.from_ids(np.array([7]))
    refused("k", _core.select_cuts, ids, mask, entropies, table, flag, None)
    refused("think_end_id", _core.select_cuts, ids, mask, entropies, table, 2, flag)
    refused("think_end_id", _core.segment_paragraphs, ids, mask, table, flag)
    options = dict(alpha=0.1, gamma=1.0, lam=1.0, norm_by_std=True, process_std="group",
                   stats_include_baseline=False, drop_first_token_reward=False, critic_target="gae")
    refused("k", _core.check_options, "grpo", flag, 0.1, None, options)
    table = np.zeros(3, dtype=np.uint32), np.zeros(3, dtype=np.uint32), np.zeros(3, dtype=bool)
    refused("min_newlines", _core.DelimiterTable.from_text, *table, flag)


def test_integers_still_pass_the_extension():
    ids, mask, entropies = cut_inputs()
    table = _core.DelimiterTable.from_ids(np.array([7]))
    for k, think_end_id in [(1, 9), (np.int64(1), np.int32(9))]:
        offsets, positions, ends = _core.select_cuts(ids, mask, entropies, table, k, think_end_id)
        assert positions.tolist() == [0, 4, 6] and ends.tolist() == [6]
    refused("k", _core.select_cuts, ids, mask, entropies, table, 2**70, None)
    text_table = np.zeros(3, dtype=np.uint32), np.zeros(3, dtype=np.uint32), np.zeros(3, dtype=bool)
    assert "min_newlines=2" in repr(_core.DelimiterTable.from_text(*text_table, np.int64(2)))
    refused("min_newlines", _core.DelimiterTable.from_text, *text_table, 2**40)


@pytest.mark.parametrize("delimiters", [[True, 7], (7, np.True_), [False]], ids=repr)
def test_bool_is_no_delimiter_id(delimiters):
    # Before: NumPy read [True, 7] as the ids [1, 7].
    ids, mask, entropies = cut_inputs()
    refused("delimiters", rc.select_cuts, ids, mask, entropies, delimiters=delimiters)
    refused("delimiters", rc.segment_paragraphs, ids, mask, delimiters=delimiters)


def test_bool_arrays_are_no_token_ids():
    ids, mask, entropies = cut_inputs()
    refused("token_ids", rc.select_cuts, ids.astype(bool), mask, entropies, delimiters=[7])
    refused("token_ids", rc.segment_paragraphs, ids.astype(bool), mask, delimiters=[7])


@pytest.mark.parametrize("argument", ["offsets", "positions", "group_index"])
def test_bool_arrays_are_no_integer_arrays(argument):
    x = batch("grpo")
    x[argument] = np.asarray(x[argument]).astype(bool)
    refused(argument, rc.compute_advantages, "grpo", *[x.pop(a) for a in ADV_POSITIONAL[1:]], **x)


def test_bool_offsets_are_no_offsets():
    refused("offsets", rc.score_steps, np.array([-1.0, -0.5]), np.array([False, True]))


# --------------------------------------------------------------------------- Cuts indexing (issue 25)


def _three_rows():
    return rc.Cuts.from_rows([[0, 3], [0, 2, 5], [0, 1]], ends=[3, 5, 1])


def test_cuts_row_counts_negative_indices_from_the_end():
    """Before: row(-1) sliced positions[offsets[-1]:offsets[0]], an empty array, without an error."""
    cuts = _three_rows()
    for b in range(-3, 3):
        assert cuts.row(b).tolist() == cuts.rows()[b].tolist()
    assert cuts.row(np.int64(-2)).tolist() == [0, 2, 5]


def test_cuts_take_counts_negative_indices_from_the_end():
    """Before: take([-1]) paired row -1's empty positions with ends[-1]; now the whole last row."""
    cuts = _three_rows()
    taken = cuts.take([-1, 0, -2])
    assert [row.tolist() for row in taken.rows()] == [[0, 1], [0, 3], [0, 2, 5]]
    assert taken.ends.tolist() == [1, 3, 5]
    assert len(cuts.take([])) == 0


@pytest.mark.parametrize("b", [3, -4, 10**30, 1.0, True, "0"])
def test_cuts_row_out_of_range_or_not_an_index_is_refused(b):
    with pytest.raises(rc.ReproError) as error:
        _three_rows().row(b)
    assert error.value.argument == "b"
    with pytest.raises(rc.ReproError) as error:
        _three_rows().take([0, b])
    assert error.value.argument == "rows"
