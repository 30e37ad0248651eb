"""Every bad input raises repro_core.ReproError (a ValueError) whose message names the offending
argument; garbage never escapes as anything else (TypeError, OverflowError, pyo3's
PanicException, ...)."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import repro_core as rc
from repro_core._api import check_options
from test_parity import adv_inputs, cut_batches, score_inputs

# empty delimiter sets are drawn on purpose; their "no paragraph break" warning is expected
pytestmark = pytest.mark.filterwarnings("ignore:Delimiters:UserWarning")

ADV_POSITIONAL = ("estimator", "outcome_rewards", "step_rewards", "offsets", "positions",
                  "response_mask", "group_index")


def names_in(msg, names):
    for n in names:
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", msg):
            return True
    return False


def expect_error(names, fn, *args, **kw):
    names = (names,) if isinstance(names, str) else tuple(names)
    try:
        fn(*args, **kw)
    except rc.ReproError as exc:
        msg = str(exc)
        assert isinstance(exc, ValueError)
        assert names_in(msg, names), f"message does not name {names}: {msg!r}"
        return msg
    except BaseException as exc:  # PanicException derives from BaseException
        pytest.fail(f"expected ReproError naming {names}, got {type(exc).__name__}: {exc}")
    pytest.fail(f"expected ReproError naming {names}, nothing was raised")


def test_repro_error_is_value_error():
    assert issubclass(rc.ReproError, ValueError)


# ------------------------------------------------------------------------------------ select_cuts


def cut_base():
    ids = np.array([[1, 7, 2, 7, 3, 9], [4, 7, 5, 0, 0, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=bool)
    ent = np.array([[.1, .2, .3, .4, .5, .6], [.3, .2, .1, np.nan, np.nan, np.nan]])
    return dict(token_ids=ids, response_mask=mask, entropies=ent)


def call_cuts(x, **kw):
    kw.setdefault("delimiters", [7])
    kw.setdefault("k", 2)
    kw.setdefault("think_end_id", 9)
    return rc.select_cuts(x["token_ids"], x["response_mask"], x["entropies"], **kw)


def call_segs(x, **kw):
    kw.setdefault("delimiters", [7])
    kw.setdefault("think_end_id", 9)
    return rc.segment_paragraphs(x["token_ids"], x["response_mask"], **kw)


def test_cut_base_is_valid():
    cuts = call_cuts(cut_base())
    assert cuts.positions.tolist() == [0, 2, 4, 6, 0, 2, 3]
    segs = call_segs(cut_base())
    assert segs.starts.tolist() == [0, 2, 4, 0, 2]


def _mut(**changes):
    def f(x):
        for k, v in changes.items():
            x[k] = v(x) if callable(v) else v
        return x
    return f


def _set(name, index, value, dtype=None):
    def f(x):
        a = x[name].astype(dtype) if dtype is not None else x[name].copy()
        a[index] = value
        x[name] = a
        return x
    return f


ALL3 = ("token_ids", "response_mask", "entropies")

CUT_ARRAY_CASES = [
    ("ids_1d", _mut(token_ids=lambda x: x["token_ids"][0]), "token_ids"),
    ("ids_3d", _mut(token_ids=lambda x: x["token_ids"][None]), "token_ids"),
    ("ids_0d", _mut(token_ids=np.int64(3)), "token_ids"),
    ("mask_1d", _mut(response_mask=lambda x: x["response_mask"][0]), "response_mask"),
    ("mask_3d", _mut(response_mask=lambda x: x["response_mask"][None]), "response_mask"),
    ("ent_1d", _mut(entropies=lambda x: x["entropies"][0]), "entropies"),
    ("mask_wider", _mut(response_mask=lambda x: np.pad(x["response_mask"], ((0, 0), (0, 1)))),
     "response_mask"),
    ("mask_taller", _mut(response_mask=lambda x: np.pad(x["response_mask"], ((0, 1), (0, 0)))),
     "response_mask"),
    ("ent_wider", _mut(entropies=lambda x: np.pad(x["entropies"], ((0, 0), (0, 1)))),
     "entropies"),
    ("ent_taller", _mut(entropies=lambda x: np.pad(x["entropies"], ((0, 1), (0, 0)))),
     "entropies"),
    ("ent_transposed", _mut(entropies=lambda x: x["entropies"].T), "entropies"),
    ("mask_value_2", _set("response_mask", (0, 0), 2, np.int64), "response_mask"),
    ("mask_value_neg", _set("response_mask", (1, 0), -1, np.int32), "response_mask"),
    ("mask_value_half", _set("response_mask", (0, 3), 0.5, np.float64), "response_mask"),
    ("mask_value_nan", _set("response_mask", (0, 3), np.nan, np.float32), "response_mask"),
    ("mask_not_right_padded", _set("response_mask", (1, 4), True), "response_mask"),
    ("mask_hole", _set("response_mask", (0, 2), False), "response_mask"),
    ("mask_left_padded", _mut(response_mask=np.array([[1] * 6, [0, 0, 0, 1, 1, 1]])),
     "response_mask"),
    ("ent_nan", _set("entropies", (0, 2), np.nan), "entropies"),
    ("ent_nan_f32", _set("entropies", (1, 1), np.nan, np.float32), "entropies"),
    ("ent_inf", _set("entropies", (1, 2), np.inf), "entropies"),
    ("ent_neginf", _set("entropies", (0, 1), -np.inf), "entropies"),
    ("ent_nan_at_0", _set("entropies", (0, 0), np.nan), "entropies"),
    ("ent_nan_after_think_end", _set("entropies", (0, 5), np.nan), "entropies"),
    ("batch_empty", _mut(token_ids=np.zeros((0, 6), np.int64),
                         response_mask=np.zeros((0, 6), bool),
                         entropies=np.zeros((0, 6))), ALL3),
    ("width_empty", _mut(token_ids=np.zeros((2, 0), np.int64),
                         response_mask=np.zeros((2, 0), bool),
                         entropies=np.zeros((2, 0))), ALL3),
    ("ids_float", _mut(token_ids=lambda x: x["token_ids"].astype(np.float64)), "token_ids"),
    ("ids_str", _mut(token_ids=lambda x: x["token_ids"].astype(str)), "token_ids"),
    ("ids_object", _mut(token_ids=lambda x: x["token_ids"].astype(object)), "token_ids"),
    ("ids_complex", _mut(token_ids=lambda x: x["token_ids"].astype(np.complex128)), "token_ids"),
    ("ids_none", _mut(token_ids=None), "token_ids"),
    ("ids_ragged_list", _mut(token_ids=[[1, 2, 3], [4, 5]]), "token_ids"),
    ("ent_str", _mut(entropies=lambda x: x["entropies"].astype(str)), "entropies"),
    ("ent_object", _mut(entropies=lambda x: x["entropies"].astype(object)), "entropies"),
    ("ent_complex", _mut(entropies=lambda x: x["entropies"].astype(np.complex128)), "entropies"),
    ("ent_complex64", _mut(entropies=lambda x: x["entropies"].astype(np.complex64)), "entropies"),
    ("mask_str", _mut(response_mask=lambda x: x["response_mask"].astype(str)), "response_mask"),
    ("mask_object", _mut(response_mask=lambda x: x["response_mask"].astype(object)),
     "response_mask"),
    ("mask_complex", _mut(response_mask=lambda x: x["response_mask"].astype(np.complex64)),
     "response_mask"),
]


@pytest.mark.parametrize("case,mutate,names", CUT_ARRAY_CASES, ids=[c[0] for c in CUT_ARRAY_CASES])
def test_select_cuts_bad_arrays(case, mutate, names):
    x = mutate(cut_base())
    expect_error(names, call_cuts, x)


SEG_CASES = [c for c in CUT_ARRAY_CASES if not c[0].startswith("ent_")]


@pytest.mark.parametrize("case,mutate,names", SEG_CASES, ids=[c[0] for c in SEG_CASES])
def test_segment_paragraphs_bad_arrays(case, mutate, names):
    x = mutate(cut_base())
    names = tuple(n for n in ((names,) if isinstance(names, str) else names) if n != "entropies")
    expect_error(names, call_segs, x)


@pytest.mark.parametrize("k", [-1, -100, 1.5, "3", None, 2**64, 2**70])
def test_select_cuts_bad_k(k):
    expect_error("k", call_cuts, cut_base(), k=k)


@pytest.mark.parametrize("fn", [call_cuts, call_segs])
@pytest.mark.parametrize("think_end_id", ["x", 1.5, [9], 2**70])
def test_bad_think_end_id(fn, think_end_id):
    expect_error("think_end_id", fn, cut_base(), think_end_id=think_end_id)


@pytest.mark.parametrize("fn", [call_cuts, call_segs])
@pytest.mark.parametrize("delimiters", ["paper", None, 7, [1.5], [[7]], ["\n\n"], [2**70],
                                        {"a": 1}])
def test_bad_delimiters(fn, delimiters):
    expect_error("delimiters", fn, cut_base(), delimiters=delimiters)


def test_nan_in_padding_is_fine():
    x = cut_base()
    x["entropies"][1, 3:] = [np.nan, np.inf, -np.inf]
    x["token_ids"][1, 3:] = [-5, 10**9, -1]
    call_cuts(x)
    call_segs(x)
    call_cuts(x, delimiters=rc.Delimiters.from_token_texts(["a"] * 10, mode="paper"))


def test_empty_rows_are_fine():
    x = cut_base()
    x["response_mask"][1] = False
    cuts = call_cuts(x)
    assert cuts.positions[cuts.offsets[1]:].tolist() == [0]


TEXTS = ["a", "b", ".\n\n", "\n", "Then", " "]


@pytest.mark.parametrize("mode", ["paper", "line"])
@pytest.mark.parametrize("bad_id", [len(TEXTS), 1000, -1])
@pytest.mark.parametrize("fn", ["cuts", "segs"])
def test_ids_outside_text_table(mode, bad_id, fn):
    d = rc.Delimiters.from_token_texts(TEXTS, mode=mode)
    x = cut_base()
    x["token_ids"] = np.array([[0, 2, 4, 1, 3, 4], [0, 1, 2, 0, 0, 0]], dtype=np.int64)
    f = call_cuts if fn == "cuts" else call_segs
    f(x, delimiters=d, think_end_id=None)  # valid
    x["token_ids"][1, 1] = bad_id
    expect_error("token_ids", f, x, delimiters=d, think_end_id=None)
    x["token_ids"][1, 1] = 1
    x["token_ids"][0, 5] = bad_id  # the last valid token
    expect_error("token_ids", f, x, delimiters=d, think_end_id=None)


# ------------------------------------------------------------------------------------ score_steps


def test_score_base_is_valid():
    s = rc.score_steps(np.array([-2.0, -1.0, -0.5, -1.0, -1.2]), np.array([0, 3, 5]))
    assert s.score.shape == (5,)
    # rows without points are allowed
    s = rc.score_steps(np.array([-2.0, -1.0]), np.array([0, 0, 2, 2]))
    assert s.score.shape == (2,)
    s = rc.score_steps(np.zeros(0), np.array([0, 0]))
    assert s.score.shape == (0,)


J5 = np.array([-2.0, -1.0, -0.5, -1.0, -1.2])
O5 = np.array([0, 3, 5])

SCORE_CASES = [
    ("j_2d", J5[None], O5, "j_values"),
    ("j_0d", np.float64(-1.0), np.array([0, 1]), "j_values"),
    ("offsets_2d", J5, O5[None], "offsets"),
    ("offsets_0d", J5, np.int64(0), "offsets"),
    ("offsets_empty", J5, np.zeros(0, np.int64), "offsets"),
    ("offsets_start_1", J5, np.array([1, 3, 5]), "offsets"),
    ("offsets_start_neg", J5, np.array([-1, 3, 5]), "offsets"),
    ("offsets_decrease", J5, np.array([0, 4, 3, 5]), "offsets"),
    ("offsets_short_of_n", J5, np.array([0, 3, 4]), "offsets"),
    ("offsets_beyond_n", J5, np.array([0, 3, 6]), "offsets"),
    ("batch_empty", np.zeros(0), np.array([0]), ("offsets", "j_values")),
    ("offsets_float", J5, O5.astype(float), "offsets"),
    ("offsets_str", J5, O5.astype(str), "offsets"),
    ("j_nan", np.array([-2.0, np.nan, -0.5, -1.0, -1.2]), O5, "j_values"),
    ("j_nan_f32", np.array([-2.0, -1, -0.5, -1.0, np.nan], np.float32), O5, "j_values"),
    ("j_inf", np.array([-2.0, -1, np.inf, -1.0, -1.2]), O5, "j_values"),
    ("j_neginf", np.array([-np.inf, -1, -0.5, -1.0, -1.2]), O5, "j_values"),
    ("j_positive", np.array([-2.0, -1, 0.5, -1.0, -1.2]), O5, "j_values"),
    ("j_tiny_positive", np.array([-2.0, -1, -0.5, -1.0, 1e-300]), O5, "j_values"),
    ("j_str", J5.astype(str), O5, "j_values"),
    ("j_object", J5.astype(object), O5, "j_values"),
    ("j_complex", J5.astype(np.complex128), O5, "j_values"),
    ("j_none", None, O5, "j_values"),
]


@pytest.mark.parametrize("case,j,offsets,names", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_score_steps_bad_arrays(case, j, offsets, names):
    expect_error(names, rc.score_steps, j, offsets)


@pytest.mark.parametrize("w", [-0.1, 1.1, np.nan, np.inf, -np.inf, "0.1", None, 1 + 1e-12])
def test_score_steps_bad_w(w):
    expect_error("w", rc.score_steps, J5, O5, w=w)


@pytest.mark.parametrize("ema", [0.0, -0.5, 1.5, np.nan, np.inf, "0.5", 1 + 1e-12, -0.0])
def test_score_steps_bad_stability_ema(ema):
    expect_error("stability_ema", rc.score_steps, J5, O5, stability_ema=ema)


def test_score_steps_good_edges():
    rc.score_steps(J5, O5, w=0.0)
    rc.score_steps(J5, O5, w=1.0)
    rc.score_steps(J5, O5, stability_ema=1.0)
    rc.score_steps(J5, O5, stability_ema=1e-9)
    rc.score_steps(np.array([-0.0, 0.0, -1.0]), np.array([0, 3]))  # J = 0 is allowed


# ------------------------------------------------------------------------------------ advantages


def adv_base(estimator="grpo"):
    mask = np.zeros((3, 6), dtype=bool)
    mask[0, :6] = True
    mask[1, :3] = True
    x = dict(
        estimator=estimator,
        outcome_rewards=np.array([1.0, 0.0, 1.0]),
        step_rewards=np.array([0.0, 0.3, -0.1, 0.0, 0.2, 0.0]),
        offsets=np.array([0, 3, 5, 6]),
        positions=np.array([0, 2, 6, 0, 3, 0]),
        response_mask=mask,
        group_index=np.array([0, 0, 1]),
        kw={},
    )
    if estimator == "ppo":
        values = np.full((3, 6), np.nan)
        values[mask] = np.linspace(-1, 1, mask.sum())
        x["kw"] = {"values": values}
    return x


def call_adv(x, **kw):
    all_kw = dict(x["kw"])
    all_kw.update(kw)
    return rc.compute_advantages(*[x[a] for a in ADV_POSITIONAL], **all_kw)


@pytest.mark.parametrize("est", ["grpo", "dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"])
def test_adv_base_is_valid(est):
    out = call_adv(adv_base(est))
    assert out.advantages.shape == (3, 6)
    tr = np.full((3, 6), np.nan)
    tr[adv_base()["response_mask"]] = -0.01
    if est in ("ppo", "reinforce_pp"):
        call_adv(adv_base(est), token_rewards=tr)  # NaN in padding is fine
    if est == "ppo":
        call_adv(adv_base(est), lam=0.9)


def _adv_set(name, index, value, dtype=None):
    def f(x):
        a = np.array(x[name], dtype=dtype) if dtype is not None else np.array(x[name])
        a[index] = value
        x[name] = a
        return x
    return f


def _adv_mut(**changes):
    def f(x):
        for k, v in changes.items():
            x[k] = v(x) if callable(v) else v
        return x
    return f


ADV_ALL = ("outcome_rewards", "response_mask", "group_index", "offsets", "positions",
           "step_rewards")

ADV_CASES = [
    ("estimator_unknown", _adv_mut(estimator="gpro"), "estimator"),
    ("estimator_upper", _adv_mut(estimator="GRPO"), "estimator"),
    ("estimator_int", _adv_mut(estimator=3), "estimator"),
    ("estimator_none", _adv_mut(estimator=None), "estimator"),
    ("rewards_2d", _adv_mut(outcome_rewards=lambda x: x["outcome_rewards"][None]),
     "outcome_rewards"),
    ("rewards_short", _adv_mut(outcome_rewards=np.array([1.0, 0.0])), "outcome_rewards"),
    ("rewards_nan", _adv_set("outcome_rewards", 1, np.nan), "outcome_rewards"),
    ("rewards_inf", _adv_set("outcome_rewards", 2, np.inf), "outcome_rewards"),
    ("rewards_nan_empty_row", _adv_set("outcome_rewards", 2, np.nan), "outcome_rewards"),
    ("rewards_str", _adv_mut(outcome_rewards=lambda x: x["outcome_rewards"].astype(str)),
     "outcome_rewards"),
    ("rewards_object", _adv_mut(outcome_rewards=lambda x: x["outcome_rewards"].astype(object)),
     "outcome_rewards"),
    ("rewards_complex", _adv_mut(outcome_rewards=lambda x: x["outcome_rewards"] + 0j),
     "outcome_rewards"),
    ("steps_long", _adv_mut(step_rewards=np.zeros(7)), ("step_rewards", "offsets")),
    ("steps_short", _adv_mut(step_rewards=np.zeros(5)), ("step_rewards", "offsets")),
    ("steps_2d", _adv_mut(step_rewards=lambda x: x["step_rewards"][None]), "step_rewards"),
    ("steps_nan", _adv_set("step_rewards", 1, np.nan), "step_rewards"),
    ("steps_inf", _adv_set("step_rewards", 4, -np.inf), "step_rewards"),
    ("steps_complex", _adv_mut(step_rewards=lambda x: x["step_rewards"] + 0j), "step_rewards"),
    ("offsets_len", _adv_mut(offsets=np.array([0, 3, 6])), ("offsets", "positions")),
    ("offsets_start", _adv_mut(offsets=np.array([1, 3, 5, 6])), "offsets"),
    ("offsets_decrease", _adv_mut(offsets=np.array([0, 5, 3, 6])), "offsets"),
    ("offsets_end", _adv_mut(offsets=np.array([0, 3, 5, 5])), ("offsets", "positions")),
    ("offsets_float", _adv_mut(offsets=lambda x: x["offsets"].astype(float)), "offsets"),
    ("offsets_2d", _adv_mut(offsets=lambda x: x["offsets"][None]), "offsets"),
    ("positions_beyond_width", _adv_set("positions", 2, 7), "positions"),
    ("positions_beyond_row", _adv_set("positions", 4, 4), "positions"),
    ("positions_beyond_row_empty", _adv_mut(positions=np.array([0, 2, 6, 0, 3, 1])),
     "positions"),
    ("positions_not_0", _adv_set("positions", 3, 1), "positions"),
    ("positions_first_row_not_0", _adv_set("positions", 0, 1), "positions"),
    ("positions_repeat", _adv_set("positions", 2, 2), "positions"),
    ("positions_decrease", _adv_mut(positions=np.array([0, 5, 2, 0, 3, 0])), "positions"),
    ("positions_negative", _adv_set("positions", 1, -2), "positions"),
    ("positions_float", _adv_mut(positions=lambda x: x["positions"].astype(float)), "positions"),
    ("positions_2d", _adv_mut(positions=lambda x: x["positions"][None]), "positions"),
    ("mask_1d", _adv_mut(response_mask=lambda x: x["response_mask"][0]), "response_mask"),
    ("mask_value_2", _adv_set("response_mask", (0, 0), 2, np.int64), "response_mask"),
    ("mask_half", _adv_set("response_mask", (1, 1), 0.5, np.float32), "response_mask"),
    ("mask_not_right_padded", _adv_set("response_mask", (1, 5), True), "response_mask"),
    ("mask_str", _adv_mut(response_mask=lambda x: x["response_mask"].astype(str)),
     "response_mask"),
    ("mask_taller", _adv_mut(response_mask=lambda x: np.pad(x["response_mask"], ((0, 1), (0, 0)))),
     ("response_mask", "outcome_rewards", "offsets", "group_index")),
    ("group_short", _adv_mut(group_index=np.array([0, 0])), "group_index"),
    ("group_long", _adv_mut(group_index=np.array([0, 0, 1, 1])), "group_index"),
    ("group_2d", _adv_mut(group_index=lambda x: x["group_index"][None]), "group_index"),
    ("group_float", _adv_mut(group_index=np.array([0.0, 0.5, 1.0])), "group_index"),
    ("group_str", _adv_mut(group_index=np.array(["a", "a", "b"])), "group_index"),
    ("group_object", _adv_mut(group_index=np.array([0, 0, 1], dtype=object)), "group_index"),
    ("batch_empty", _adv_mut(outcome_rewards=np.zeros(0), step_rewards=np.zeros(0),
                             offsets=np.array([0]), positions=np.zeros(0, np.int64),
                             response_mask=np.zeros((0, 6), bool),
                             group_index=np.zeros(0, np.int64)), ADV_ALL),
    ("width_empty", _adv_mut(step_rewards=np.zeros(3), offsets=np.array([0, 1, 2, 3]),
                             positions=np.zeros(3, np.int64),
                             response_mask=np.zeros((3, 0), bool)), ADV_ALL),
]


@pytest.mark.parametrize("case,mutate,names", ADV_CASES, ids=[c[0] for c in ADV_CASES])
@pytest.mark.parametrize("est", ["grpo", "ppo", "reinforce_pp"])
def test_compute_advantages_bad_arrays(case, mutate, names, est):
    x = mutate(adv_base(est))
    if est == "ppo" and case in ("mask_taller", "width_empty", "batch_empty"):
        x["kw"] = {"values": np.zeros(np.shape(x["response_mask"]))}
    expect_error(names, call_adv, x)


@pytest.mark.parametrize("est", ["grpo", "dr_grpo", "reinforce_pp", "reinforce_pp_baseline"])
def test_values_only_for_ppo(est):
    values = np.zeros((3, 6))
    expect_error("values", call_adv, adv_base(est), values=values)


def test_ppo_needs_values():
    x = adv_base("ppo")
    x["kw"] = {}
    expect_error("values", call_adv, x)


@pytest.mark.parametrize("est", ["grpo", "dr_grpo", "reinforce_pp_baseline"])
def test_token_rewards_only_for_ppo_and_reinforce_pp(est):
    expect_error("token_rewards", call_adv, adv_base(est), token_rewards=np.zeros((3, 6)))


@pytest.mark.parametrize("est", ["grpo", "dr_grpo", "reinforce_pp", "reinforce_pp_baseline"])
def test_lam_only_for_ppo(est):
    expect_error("lam", call_adv, adv_base(est), lam=0.9)


@pytest.mark.parametrize("est", ["ppo", "reinforce_pp", "reinforce_pp_baseline"])
def test_norm_by_std_false_only_for_grpo(est):
    expect_error("norm_by_std", call_adv, adv_base(est), norm_by_std=False)


@pytest.mark.parametrize("est", ["grpo", "dr_grpo", "reinforce_pp", "reinforce_pp_baseline"])
def test_critic_target_only_for_ppo(est):
    expect_error("critic_target", call_adv, adv_base(est), critic_target="advantages")


def test_critic_target_and_process_std_names():
    expect_error("critic_target", call_adv, adv_base("ppo"), critic_target="returns")
    expect_error("critic_target", call_adv, adv_base("ppo"), critic_target=1)
    expect_error("process_std", call_adv, adv_base("grpo"), process_std="batches")
    expect_error("process_std", call_adv, adv_base("grpo"), process_std=None)


@pytest.mark.parametrize("est", ["dr_grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"])
@pytest.mark.parametrize("process_std", ["batch", "none"])
def test_process_std_only_for_grpo(est, process_std):
    expect_error("process_std", call_adv, adv_base(est), process_std=process_std)


@pytest.mark.parametrize("process_std", ["batch", "none"])
def test_process_std_contradicting_norm_by_std(process_std):
    expect_error("process_std", call_adv, adv_base("grpo"), process_std=process_std, norm_by_std=False)


@pytest.mark.parametrize("name", ["stats_include_baseline", "drop_first_token_reward"])
def test_authors_flags_are_bools(name):
    expect_error(name, call_adv, adv_base("grpo"), **{name: "yes"})
    expect_error(name, check_options, **{name: 1})


def _values_with(index, value, shape=(3, 6)):
    x = adv_base("ppo")
    v = np.array(x["kw"]["values"])
    if shape != v.shape:
        return np.zeros(shape)
    v[index] = value
    return v


@pytest.mark.parametrize("values", [
    _values_with((0, 0), np.nan), _values_with((1, 2), np.inf), _values_with((0, 5), -np.inf),
    np.zeros((3, 7)), np.zeros((2, 6)), np.zeros(6), np.zeros((3, 6), dtype=np.complex128),
    np.zeros((3, 6)).astype(str), np.zeros((3, 6), dtype=object)],
    ids=["nan", "inf", "neginf", "wider", "shorter", "1d", "complex", "str", "object"])
def test_bad_values(values):
    expect_error("values", call_adv, adv_base("ppo"), values=values)


@pytest.mark.parametrize("est", ["ppo", "reinforce_pp"])
@pytest.mark.parametrize("case", ["nan", "inf", "shape", "complex"])
def test_bad_token_rewards(est, case):
    tr = np.zeros((3, 6))
    if case == "nan":
        tr[1, 2] = np.nan
    elif case == "inf":
        tr[0, 0] = np.inf
    elif case == "shape":
        tr = np.zeros((3, 5))
    else:
        tr = tr.astype(np.complex64)
    expect_error("token_rewards", call_adv, adv_base(est), token_rewards=tr)


@pytest.mark.parametrize("est", ["grpo", "ppo"])
@pytest.mark.parametrize("gamma", [-0.1, 1.1, np.nan, np.inf, "1", None])
def test_bad_gamma(est, gamma):
    expect_error("gamma", call_adv, adv_base(est), gamma=gamma)


@pytest.mark.parametrize("lam", [-0.1, 1.1, np.nan, np.inf, "1"])
def test_bad_lam(lam):
    expect_error("lam", call_adv, adv_base("ppo"), lam=lam)


@pytest.mark.parametrize("est", ["grpo", "reinforce_pp"])
@pytest.mark.parametrize("alpha", [np.nan, np.inf, -np.inf, "0.1", None])
def test_bad_alpha(est, alpha):
    expect_error("alpha", call_adv, adv_base(est), alpha=alpha)


def test_good_edges():
    call_adv(adv_base("grpo"), gamma=0.0, alpha=0.0)
    call_adv(adv_base("grpo"), gamma=1.0, alpha=-1.0, norm_by_std=False)
    call_adv(adv_base("dr_grpo"), norm_by_std=False)
    call_adv(adv_base("ppo"), gamma=0.0, lam=0.0)
    call_adv(adv_base("ppo"), critic_target="advantages", stats_include_baseline=True, drop_first_token_reward=True)
    call_adv(adv_base("grpo"), process_std="batch")
    call_adv(adv_base("grpo"), process_std="none")
    x = adv_base()
    x["group_index"] = np.array([-(2**40), -(2**40), 2**40])
    call_adv(x)


# ------------------------------------------------------------------------------------ fuzz

FUZZ_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64,
               np.float16, np.float32, np.float64, np.complex64, np.complex128, np.bool_,
               "U3", "S2", "M8[s]", "m8[s]"]

garbage_arrays = hnp.arrays(
    dtype=st.sampled_from(FUZZ_DTYPES).map(np.dtype),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
)

garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(-(2**66), 2**66), max_size=6),
    st.lists(st.lists(st.integers(-3, 12), max_size=4), max_size=4),
    st.lists(st.floats(allow_nan=True), max_size=6),
    garbage_arrays,
    garbage_arrays.map(lambda a: a.astype(object)),
    garbage_arrays.map(lambda a: a.T),
    st.builds(object),
    st.just({"a": 1}),
)


def small_perturb(value, draw):
    """A near-valid variant of an array: an element set to an extreme, a dtype change,
    a slice, a transpose."""
    a = np.asarray(value)
    how = draw(st.sampled_from(["extreme", "astype", "slice", "transpose", "reshape"]))
    if how == "extreme" and a.size:
        a = a.copy() if a.dtype.kind in "biuf" else a.astype(np.float64)
        idx = tuple(draw(st.integers(0, s - 1)) for s in a.shape)
        if a.dtype.kind == "f":
            a[idx] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e300, 5.0, -5.0]))
        elif a.dtype.kind in "iu":
            info = np.iinfo(a.dtype)
            a[idx] = draw(st.sampled_from([info.min, info.max, 0, 1, -1 if info.min < 0 else 2]))
        else:
            a[idx] = not a[idx]
        return a
    if how == "astype":
        return a.astype(draw(st.sampled_from(FUZZ_DTYPES[:13])))
    if how == "slice" and a.ndim:
        return a[..., : draw(st.integers(0, max(a.shape[-1] - 1, 0)))]
    if how == "transpose":
        return a.T
    if how == "reshape":
        return a.reshape(-1)
    return a


def fuzz_args(draw, args, names):
    n = draw(st.sampled_from([1, 1, 1, 2, 3]))
    for name in draw(st.lists(st.sampled_from(names), min_size=n, max_size=n, unique=True)):
        if isinstance(args[name], np.ndarray) and draw(st.integers(0, 2)) > 0:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                args[name] = small_perturb(args[name], draw)
        else:
            args[name] = draw(garbage)
    return args


# fuzz examples are cheap (a few ms): run more of them than the profile's default
FUZZ = settings(max_examples=3 * settings.default.max_examples)


def returns_or_repro_error(fn, *args, **kw):
    try:
        fn(*args, **kw)
        event("returned")
    except rc.ReproError as exc:
        assert isinstance(exc, ValueError)
        assert str(exc), "empty ReproError message"
        event("ReproError")
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        pytest.fail(f"{type(exc).__module__}.{type(exc).__name__} escaped: {exc!r}")


@FUZZ
@given(cut_batches(max_b=4, max_t=8), st.data())
def test_fuzz_select_cuts(x, data):
    args = dict(token_ids=x["token_ids"], response_mask=x["response_mask"],
                entropies=x["entropies"], delimiters=x["real_delimiters"], k=x["k"],
                think_end_id=x["think_end_id"])
    args = fuzz_args(data.draw, args, list(args))
    returns_or_repro_error(rc.select_cuts, args.pop("token_ids"), args.pop("response_mask"),
                           args.pop("entropies"), **args)


@FUZZ
@given(cut_batches(max_b=4, max_t=8), st.data())
def test_fuzz_segment_paragraphs(x, data):
    args = dict(token_ids=x["token_ids"], response_mask=x["response_mask"],
                delimiters=x["real_delimiters"], think_end_id=x["think_end_id"])
    args = fuzz_args(data.draw, args, list(args))
    returns_or_repro_error(rc.segment_paragraphs, args.pop("token_ids"),
                           args.pop("response_mask"), **args)


@FUZZ
@given(score_inputs(), st.data())
def test_fuzz_score_steps(x, data):
    args = fuzz_args(data.draw, dict(x), list(x))
    returns_or_repro_error(rc.score_steps, args.pop("j_values"), args.pop("offsets"), **args)


@FUZZ
@given(adv_inputs(max_b=4, max_t=8), st.data())
def test_fuzz_compute_advantages(x, data):
    x = dict(x)
    x.pop("lengths")
    names = list(x)
    args = fuzz_args(data.draw, x, names)
    returns_or_repro_error(rc.compute_advantages, *[args.pop(a) for a in ADV_POSITIONAL], **args)
