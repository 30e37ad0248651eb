"""Property tests: the real repro_core API against the NumPy oracle (tests/reference.py) on random
ragged batches, for every function, estimator and option, and every accepted input form (int32 /
int64 ids, float32 / float64 floats, bool / int / float masks, C / F / strided / reversed
layouts)."""

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
import repro_core as rc

# token texts for text-rule vocabularies (texts[i] is the text of token id i)
TEXT_POOL = [
    "a", "b", ".", "?", "\n", "\n\n", ".\n", ".\n\n", " ", "\nThen", " \n", "\t", "Then",
    "\n\nThen", "a\nb", "\r\n", " \n\t\n", "x\n", "\n \n", "?\n", " \t", "\n\n\n",
]
# plus the empty text (a special token decoding to ""), which the text rule treats as transparent
TEXT_RULE_POOL = TEXT_POOL + [""]
ID_DTYPES = [np.int32, np.int64]
FLOAT_DTYPES = [np.float32, np.float64]
MASK_DTYPES = [bool, np.int8, np.uint8, np.int32, np.int64, np.float32, np.float64]
LAYOUTS = ["C", "F", "strided", "reversed"]
ESTIMATORS = list(ref.ESTIMATORS)

F64_RTOL, F64_ATOL = 1e-9, 1e-12

# empty delimiter sets are drawn on purpose; their "no paragraph break" warning is expected
pytestmark = pytest.mark.filterwarnings("ignore:Delimiters:UserWarning")
F32_TOL = 1e-5


# ------------------------------------------------------------------------------------ helpers


def layout(a, kind):
    """The same values as `a`, in the requested memory layout (a new array or a view)."""
    a = np.asarray(a)
    if kind == "C":
        return np.ascontiguousarray(a)
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "strided":
        big = np.empty(tuple(2 * s for s in a.shape), dtype=a.dtype)
        if a.dtype.kind == "f":
            big.fill(np.nan)
        elif a.dtype.kind == "b":
            big.fill(True)
        else:
            big.fill(-7 if a.dtype.kind == "i" else 7)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == "reversed":
        return np.flip(np.flip(a).copy())
    raise AssertionError(kind)


def mask_from_lengths(lengths, T, dtype):
    m = np.zeros((len(lengths), T), dtype=dtype)
    for b, L in enumerate(lengths):
        m[b, :L] = 1
    return m


def assert_int64(arr, shape, name):
    assert isinstance(arr, np.ndarray), name
    assert arr.dtype == np.int64, (name, arr.dtype)
    assert arr.shape == shape, (name, arr.shape, shape)


def assert_f64_close(actual, expected, name):
    assert isinstance(actual, np.ndarray) and actual.dtype == np.float64, (name, actual.dtype)
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=F64_RTOL, atol=F64_ATOL, err_msg=name)


def assert_f32_close(actual, expected64, lengths, name):
    assert isinstance(actual, np.ndarray) and actual.dtype == np.float32, (name, actual.dtype)
    assert actual.shape == expected64.shape, (name, actual.shape, expected64.shape)
    scale = max(1.0, float(np.max(np.abs(expected64))) if expected64.size else 1.0)
    np.testing.assert_allclose(actual.astype(np.float64), expected64, rtol=F32_TOL,
                               atol=F32_TOL * scale, err_msg=name)
    off = ~mask_from_lengths(lengths, actual.shape[1], bool)
    assert np.all(actual[off] == 0), f"{name}: nonzero outside the response mask"


def snapshot(*arrays):
    return [copy.deepcopy(a) for a in arrays]


def assert_unchanged(before, after):
    for x, y in zip(before, after, strict=True):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------------ strategies


@st.composite
def delimiter_specs(draw):
    """(real_delimiters, oracle_delimiters, vocab_size, table_is_text)."""
    kind = draw(st.sampled_from(["list", "tuple", "ndarray", "from_ids", "paper", "line",
                                 "strings"]))
    if kind in ("paper", "line"):
        texts = draw(st.lists(st.sampled_from(TEXT_RULE_POOL), min_size=1, max_size=12))
        real = rc.Delimiters.from_token_texts(texts, mode=kind)
        return real, ref.text_table(texts, kind), len(texts), True
    if kind == "strings":  # exact-token rule on the ids whose text equals one of the strings
        texts = draw(st.lists(st.sampled_from(TEXT_POOL), min_size=1, max_size=12))
        wanted = draw(st.lists(st.sampled_from(TEXT_POOL + ["zz"]), min_size=1, max_size=4))
        real = rc.Delimiters.from_token_texts(texts, mode=list(wanted))
        return real, [i for i, t in enumerate(texts) if t in wanted], len(texts), False
    V = draw(st.integers(1, 10))
    ids = draw(st.lists(st.integers(0, V + 2), min_size=0, max_size=4))
    if kind == "list":
        real = list(ids)
    elif kind == "tuple":
        real = tuple(ids)
    elif kind == "ndarray":
        real = np.array(ids, dtype=draw(st.sampled_from(ID_DTYPES)))
    else:
        real = rc.Delimiters.from_ids(ids)
    return real, list(ids), V, False


@st.composite
def cut_batches(draw, max_b=6, max_t=20):
    real_d, oracle_d, V, text = draw(delimiter_specs())
    B = draw(st.integers(1, max_b))
    T = draw(st.integers(1, max_t))
    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    think_end_id = draw(st.one_of(st.none(), st.integers(0, V - 1)))
    placements = draw(st.lists(st.sampled_from(["random", "none", "at0", "mid", "last", "pad"]),
                               min_size=B, max_size=B))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ids = rng.integers(0, V, size=(B, T))
    for b, L in enumerate(lengths):
        if think_end_id is not None and L > 0:
            where = placements[b]
            if where == "none" and V > 1:
                row = ids[b, :L]
                row[row == think_end_id] = (think_end_id + 1) % V
            elif where == "at0":
                ids[b, 0] = think_end_id
            elif where == "mid":
                ids[b, rng.integers(0, L)] = think_end_id
            elif where == "last":
                ids[b, L - 1] = think_end_id
        # padding may hold anything: out-of-table ids, the think-end id, delimiters
        pad_style = rng.integers(0, 3)
        if pad_style == 1:
            ids[b, L:] = -1 if rng.random() < 0.5 else V + 1000
        elif pad_style == 2 and think_end_id is not None:
            ids[b, L:] = think_end_id
    ent_style = draw(st.sampled_from(["ties", "random", "constant", "signed"]))
    if ent_style == "ties":
        ent = rng.choice([0.0, 0.25, 0.5, 1.0], size=(B, T))
    elif ent_style == "signed":  # -0.0 ties with 0.0; negative and extreme finite values
        ent = rng.choice([0.0, -0.0, 1e-40, -1.0, 3.0, 1e30, -1e30], size=(B, T))
    elif ent_style == "constant":
        ent = np.full((B, T), 0.5)
    else:
        ent = rng.random((B, T)) * 5
    pad_ent = draw(st.sampled_from([None, np.nan, np.inf, -1.0]))
    if pad_ent is not None:
        for b, L in enumerate(lengths):
            ent[b, L:] = pad_ent
    id_dtype = draw(st.sampled_from(ID_DTYPES))
    ent_dtype = draw(st.sampled_from(FLOAT_DTYPES))
    mask_dtype = draw(st.sampled_from(MASK_DTYPES))
    mask = mask_from_lengths(lengths, T, mask_dtype)
    return dict(
        token_ids=layout(ids.astype(id_dtype), draw(st.sampled_from(LAYOUTS))),
        response_mask=layout(mask, draw(st.sampled_from(LAYOUTS))),
        entropies=layout(ent.astype(ent_dtype), draw(st.sampled_from(LAYOUTS))),
        real_delimiters=real_d,
        oracle_delimiters=oracle_d,
        think_end_id=think_end_id,
        k=draw(st.integers(0, 25)),
        lengths=lengths,
    )


@st.composite
def score_inputs(draw):
    nrows = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(0, 9), min_size=nrows, max_size=nrows))
    N = sum(sizes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(["random", "ties", "edge"]))
    if style == "random":
        J = -rng.exponential(2.0, N)
    elif style == "ties":
        J = -rng.choice([0.0, 0.5, 1.0, 2.0], N)
    else:
        J = -rng.choice([0.0, -0.0, 1e-12, 1e-3, 3.0, 40.0, 0.5], N)
    j_dtype = draw(st.sampled_from(FLOAT_DTYPES))
    J = J.astype(j_dtype)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(draw(st.sampled_from(ID_DTYPES)))
    w = draw(st.one_of(st.just(0.0), st.just(1.0), st.just(0.1), st.floats(0.0, 1.0)))
    ema = draw(st.one_of(st.none(), st.just(1.0), st.just(0.5), st.floats(1e-3, 1.0)))
    return dict(
        j_values=layout(J, draw(st.sampled_from(LAYOUTS))),
        offsets=layout(offsets, draw(st.sampled_from(LAYOUTS))),
        w=w,
        stability_ema=ema,
    )


def _random_positions(rng, L, style):
    if L == 0:
        return [0]
    if style == "all":
        pts = list(range(1, L + 1))
    elif style == "ends":
        pts = [L]
    elif style == "only0":
        pts = []
    else:
        pts = [p for p in range(1, L + 1) if rng.random() < 0.35]
        if rng.random() < 0.7 and L not in pts:
            pts.append(L)
    return [0] + sorted(pts)


@st.composite
def adv_inputs(draw, estimator=None, max_b=7, max_t=16):
    est = estimator if estimator is not None else draw(st.sampled_from(ESTIMATORS))
    B = draw(st.integers(1, max_b))
    T = draw(st.integers(1, max_t))
    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # group labels: arbitrary integers, any order, singletons allowed
    g_dtype = draw(st.sampled_from(ID_DTYPES))
    info = np.iinfo(g_dtype)
    pool = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=1, max_size=B,
                         unique=True))
    group_index = np.array([draw(st.sampled_from(pool)) for _ in range(B)], dtype=g_dtype)
    # cut positions (not necessarily from select_cuts)
    pos_style = draw(st.sampled_from(["random", "all", "ends", "only0"]))
    rows = [_random_positions(rng, L, pos_style) for L in lengths]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    positions = np.array([p for r in rows for p in r])
    N = len(positions)
    step_rewards = rng.normal(size=N)
    if draw(st.booleans()):
        step_rewards[offsets[:-1]] = 0.0  # as score_steps gives; otherwise j = 0 is ignored
    r_style = draw(st.sampled_from(["binary", "normal", "constant"]))
    if r_style == "binary":
        R = rng.integers(0, 2, B).astype(float)
    elif r_style == "normal":
        R = rng.normal(size=B)
    else:
        R = np.full(B, 0.3)
    alpha = draw(st.one_of(st.just(0.1), st.just(0.0), st.just(1.0), st.floats(-2.0, 2.0)))
    gamma = draw(st.one_of(st.just(1.0), st.just(0.0), st.floats(0.0, 1.0)))
    lam = draw(st.one_of(st.just(1.0), st.just(0.0), st.floats(0.0, 1.0))) if est == "ppo" else 1.0
    norm_by_std = draw(st.booleans()) if est in ("grpo", "dr_grpo") else True
    # grpo's process std (TRL's scale_rewards) and the authors' code's quirks, each on its own
    process_std = draw(st.sampled_from(["group", "batch", "none"])) if est == "grpo" and norm_by_std else "group"
    stats_include_baseline = draw(st.booleans())
    drop_first_token_reward = draw(st.booleans())
    critic_target = draw(st.sampled_from(["gae", "advantages"])) if est == "ppo" else "gae"
    f_dtype = draw(st.sampled_from(FLOAT_DTYPES))
    nan_pad = draw(st.booleans())
    values = None
    if est == "ppo":
        values = rng.normal(size=(B, T))
        if nan_pad:
            for b, L in enumerate(lengths):
                values[b, L:] = np.nan
        values = layout(values.astype(f_dtype), draw(st.sampled_from(LAYOUTS)))
    token_rewards = None
    if est in ("ppo", "reinforce_pp") and draw(st.booleans()):
        token_rewards = rng.normal(scale=0.1, size=(B, T))
        if nan_pad:
            for b, L in enumerate(lengths):
                token_rewards[b, L:] = np.inf
        token_rewards = layout(token_rewards.astype(f_dtype), draw(st.sampled_from(LAYOUTS)))
    int_dtype = draw(st.sampled_from(ID_DTYPES))
    mask = mask_from_lengths(lengths, T, draw(st.sampled_from(MASK_DTYPES)))
    return dict(
        estimator=est,
        outcome_rewards=layout(R.astype(f_dtype), draw(st.sampled_from(LAYOUTS))),
        step_rewards=layout(step_rewards.astype(f_dtype), draw(st.sampled_from(LAYOUTS))),
        offsets=layout(offsets.astype(int_dtype), draw(st.sampled_from(LAYOUTS))),
        positions=layout(positions.astype(int_dtype), draw(st.sampled_from(LAYOUTS))),
        response_mask=layout(mask, draw(st.sampled_from(LAYOUTS))),
        group_index=layout(group_index, draw(st.sampled_from(LAYOUTS))),
        alpha=alpha,
        gamma=gamma,
        lam=lam,
        norm_by_std=norm_by_std,
        values=values,
        token_rewards=token_rewards,
        process_std=process_std,
        stats_include_baseline=stats_include_baseline,
        drop_first_token_reward=drop_first_token_reward,
        critic_target=critic_target,
        lengths=lengths,
    )


# ------------------------------------------------------------------------------------ runners


def run_select_cuts(x):
    before = snapshot(x["token_ids"], x["response_mask"], x["entropies"])
    real = rc.select_cuts(x["token_ids"], x["response_mask"], x["entropies"],
                          delimiters=x["real_delimiters"], k=x["k"],
                          think_end_id=x["think_end_id"])
    assert_unchanged(before, [x["token_ids"], x["response_mask"], x["entropies"]])
    oracle = ref.select_cuts(x["token_ids"], x["response_mask"], x["entropies"],
                             x["oracle_delimiters"], k=x["k"], think_end_id=x["think_end_id"])
    B = len(x["lengths"])
    N = len(oracle["positions"])
    assert_int64(real.offsets, (B + 1,), "offsets")
    assert_int64(real.positions, (N,), "positions")
    assert_int64(real.ends, (B,), "ends")
    np.testing.assert_array_equal(real.offsets, oracle["offsets"])
    np.testing.assert_array_equal(real.positions, oracle["positions"])
    np.testing.assert_array_equal(real.ends, oracle["ends"])
    return real, oracle


def run_score_steps(j_values, offsets, w, stability_ema):
    before = snapshot(j_values, offsets)
    real = rc.score_steps(j_values, offsets, w=w, stability_ema=stability_ema)
    assert_unchanged(before, [j_values, offsets])
    oracle = ref.score_steps(j_values, offsets, w=w, stability_ema=stability_ema)
    for name in ("magnitude", "stability", "score", "reward"):
        assert_f64_close(getattr(real, name), oracle[name], name)
    return real, oracle


ADV_ARGS = ("estimator", "outcome_rewards", "step_rewards", "offsets", "positions",
            "response_mask", "group_index")
ADV_KW = ("alpha", "gamma", "lam", "norm_by_std", "values", "token_rewards", "process_std",
          "stats_include_baseline", "drop_first_token_reward", "critic_target")
RETURNING = ("ppo", "reinforce_pp")  # the estimators with returns of their own (as verl's)


def run_advantages(x):
    args = [x[a] for a in ADV_ARGS]
    kw = {a: x[a] for a in ADV_KW}
    before = snapshot(*args, *kw.values())
    real = rc.compute_advantages(*args, **kw)
    assert_unchanged(before, [*args, *kw.values()])
    oracle = ref.compute_advantages(*args, **kw)
    lengths = ref._mask_rows(x["response_mask"])
    assert_f32_close(real.advantages, oracle["advantages64"], lengths, "advantages")
    if x["estimator"] in RETURNING:
        assert real.returns is not None
        assert_f32_close(real.returns, oracle["returns64"], lengths, "returns")
    else:
        assert real.returns is None
    return real, oracle


# ------------------------------------------------------------------------------------ tests


@given(cut_batches())
def test_select_cuts_parity(x):
    run_select_cuts(x)


@given(cut_batches())
def test_segment_paragraphs_parity(x):
    real = rc.segment_paragraphs(x["token_ids"], x["response_mask"],
                                 delimiters=x["real_delimiters"], think_end_id=x["think_end_id"])
    oracle = ref.segment_paragraphs(x["token_ids"], x["response_mask"], x["oracle_delimiters"],
                                    think_end_id=x["think_end_id"])
    B = len(x["lengths"])
    S = len(oracle["starts"])
    assert_int64(real.offsets, (B + 1,), "offsets")
    assert_int64(real.starts, (S,), "starts")
    assert_int64(real.ends, (S,), "ends")
    np.testing.assert_array_equal(real.offsets, oracle["offsets"])
    np.testing.assert_array_equal(real.starts, oracle["starts"])
    np.testing.assert_array_equal(real.ends, oracle["ends"])


@given(cut_batches())
def test_cuts_are_a_subset_of_paragraph_boundaries(x):
    """Internal consistency of the real API: with k large, the cut points are exactly the
    paragraph boundaries; with any k they are a subset of them."""
    cuts = rc.select_cuts(x["token_ids"], x["response_mask"], x["entropies"],
                          delimiters=x["real_delimiters"], k=x["k"],
                          think_end_id=x["think_end_id"])
    allc = rc.select_cuts(x["token_ids"], x["response_mask"], x["entropies"],
                          delimiters=x["real_delimiters"], k=10**6,
                          think_end_id=x["think_end_id"])
    segs = rc.segment_paragraphs(x["token_ids"], x["response_mask"],
                                 delimiters=x["real_delimiters"], think_end_id=x["think_end_id"])
    for b, L in enumerate(x["lengths"]):
        pts = cuts.positions[cuts.offsets[b]:cuts.offsets[b + 1]].tolist()
        every = allc.positions[allc.offsets[b]:allc.offsets[b + 1]].tolist()
        s = segs.starts[segs.offsets[b]:segs.offsets[b + 1]].tolist()
        e = segs.ends[segs.offsets[b]:segs.offsets[b + 1]].tolist()
        bounds = sorted(set(s) | set(e)) if s else [0]
        assert every == bounds
        assert set(pts) <= set(every)
        assert pts[0] == 0 and pts[-1] == cuts.ends[b]
        if L == 0:
            assert pts == [0] and every == [0]
        else:
            assert len(pts) == min(x["k"], len(every) - 2) + 2


@pytest.mark.parametrize("mode", ["paper", "line"])
@given(texts=st.lists(st.sampled_from(TEXT_POOL), min_size=1, max_size=20))
def test_text_table_matches_independent_table(mode, texts):
    d = rc.Delimiters.from_token_texts(texts, mode=mode)
    mine = ref.text_table(texts, mode)
    assert d.mode == mode
    assert int(d.min_newlines) == mine.min_newlines
    np.testing.assert_array_equal(np.asarray(d.leading_newlines), mine.leading_newlines)
    np.testing.assert_array_equal(np.asarray(d.trailing_newlines), mine.trailing_newlines)
    np.testing.assert_array_equal(np.asarray(d.whitespace_only), mine.whitespace_only)


def test_list_of_strings_selects_tokens_by_text():
    texts = ["a", ".\n", "?\n", "\n\n", ".\n\n", "\n", "?", ".\n"]
    d = rc.Delimiters.from_token_texts(texts, mode=[".\n", "?\n", "\n\n"])
    assert sorted(np.asarray(d.token_ids).tolist()) == [1, 2, 3, 7]
    d = rc.Delimiters.from_token_texts(texts, mode=["?", "zz"])
    assert sorted(np.asarray(d.token_ids).tolist()) == [6]


@given(score_inputs())
def test_score_steps_parity(x):
    run_score_steps(**x)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@given(data=st.data())
def test_compute_advantages_parity(estimator, data):
    run_advantages(data.draw(adv_inputs(estimator)))


@given(adv_inputs(), st.randoms(use_true_random=False))
def test_advantages_invariant_to_group_relabel_and_order(x, rnd):
    """Renaming groups and permuting the rows permutes the result (in exact arithmetic; float32
    tolerance here since summation order may change)."""
    B = len(x["lengths"])
    real = rc.compute_advantages(*[x[a] for a in ADV_ARGS], **{a: x[a] for a in ADV_KW})
    perm = list(range(B))
    rnd.shuffle(perm)
    labels = sorted(set(np.asarray(x["group_index"]).tolist()))
    newlab = {g: 1000 - 3 * i for i, g in enumerate(labels)}
    offs = np.asarray(x["offsets"])
    pos = np.asarray(x["positions"])
    steps = np.asarray(x["step_rewards"])
    rows_pos = [pos[offs[b]:offs[b + 1]] for b in perm]
    rows_steps = [steps[offs[b]:offs[b + 1]] for b in perm]
    y = dict(x)
    y["outcome_rewards"] = np.asarray(x["outcome_rewards"])[perm]
    y["response_mask"] = np.asarray(x["response_mask"])[perm]
    y["group_index"] = np.array([newlab[int(g)] for g in np.asarray(x["group_index"])[perm]])
    y["positions"] = np.concatenate(rows_pos)
    y["step_rewards"] = np.concatenate(rows_steps)
    y["offsets"] = np.concatenate([[0], np.cumsum([len(r) for r in rows_pos])])
    for name in ("values", "token_rewards"):
        if x[name] is not None:
            y[name] = np.asarray(x[name])[perm]
    shuffled = rc.compute_advantages(*[y[a] for a in ADV_ARGS], **{a: y[a] for a in ADV_KW})
    scale = max(1.0, float(np.abs(real.advantages).max()))
    np.testing.assert_allclose(shuffled.advantages, real.advantages[perm], rtol=F32_TOL,
                               atol=F32_TOL * scale)


@given(cut_batches(), st.data())
def test_pipeline_end_to_end(x, data):
    """select_cuts -> random J -> score_steps -> compute_advantages, real vs oracle at each
    stage, each side fed its own previous outputs."""
    real_cuts, oracle_cuts = run_select_cuts(x)
    N = len(oracle_cuts["positions"])
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    J = -rng.exponential(1.5, N)
    if data.draw(st.booleans()):
        J = np.round(J, 1)  # ties in J
    J = J.astype(data.draw(st.sampled_from(FLOAT_DTYPES)))
    w = data.draw(st.floats(0.0, 1.0))
    ema = data.draw(st.one_of(st.none(), st.floats(1e-3, 1.0)))
    real_steps = rc.score_steps(J, real_cuts.offsets, w=w, stability_ema=ema)
    oracle_steps = ref.score_steps(J, oracle_cuts["offsets"], w=w, stability_ema=ema)
    for name in ("magnitude", "stability", "score", "reward"):
        assert_f64_close(getattr(real_steps, name), oracle_steps[name], name)

    B = len(x["lengths"])
    T = np.asarray(x["token_ids"]).shape[1]
    est = data.draw(st.sampled_from(ESTIMATORS))
    ngroups = data.draw(st.integers(1, B))
    group_index = rng.integers(0, ngroups, B) * 7 - 5
    R = rng.integers(0, 2, B).astype(float)
    kw = dict(alpha=data.draw(st.floats(0.0, 1.0)), gamma=data.draw(st.floats(0.0, 1.0)))
    if est == "ppo":
        kw["lam"] = data.draw(st.floats(0.0, 1.0))
        kw["values"] = rng.normal(size=(B, T))
    if est in RETURNING:
        kw["token_rewards"] = -0.01 * rng.random((B, T))
    lengths = ref._mask_rows(x["response_mask"])
    real = rc.compute_advantages(est, R, real_steps.reward, real_cuts.offsets,
                                 real_cuts.positions, x["response_mask"], group_index, **kw)
    oracle = ref.compute_advantages(est, R, oracle_steps["reward"], oracle_cuts["offsets"],
                                    oracle_cuts["positions"], x["response_mask"], group_index,
                                    **kw)
    assert_f32_close(real.advantages, oracle["advantages64"], lengths, "advantages")
    if est in RETURNING:
        assert_f32_close(real.returns, oracle["returns64"], lengths, "returns")


# ------------------------------------------------------------------------------------ big batches
# Large enough for the parallel path; tests/test_threads.py checks that the thread count changes nothing.


def _big_batch(seed=0, B=64, T=4096):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 49, size=(B, T))  # 49 (think-end) only where placed below
    lengths = rng.integers(0, T + 1, size=B)
    lengths[:4] = [0, T, 1, T // 2]
    for b in range(B):
        if rng.random() < 0.5 and lengths[b] > 0:
            ids[b, rng.integers(0, lengths[b])] = 49  # think-end
    mask = mask_from_lengths(lengths, T, bool)
    ent = rng.choice([0.1, 0.2, 0.3, 0.5, 1.0, 2.0], size=(B, T))
    return ids, mask, ent, lengths


@pytest.mark.parametrize("estimator", ["grpo", "ppo", "reinforce_pp", "reinforce_pp_baseline"])
def test_big_batch_matches_oracle_advantages(estimator):
    """A batch large enough for the parallel path (B x T >= 2**16), against the oracle."""
    ids, mask, ent, lengths = _big_batch(seed=3, B=16, T=4096)
    cuts = rc.select_cuts(ids, mask, ent, delimiters=[3, 7], k=20, think_end_id=49)
    rng = np.random.default_rng(4)
    steps = rc.score_steps(-rng.exponential(1.0, len(cuts.positions)), cuts.offsets)
    R = rng.normal(size=16)
    groups = np.repeat([5, -1, 9, 2], 4)
    kw = dict(gamma=0.999)
    if estimator == "ppo":
        kw.update(values=rng.normal(size=mask.shape), lam=0.95)
    if estimator in RETURNING:
        kw.update(token_rewards=-0.01 * rng.random(mask.shape))
    real = rc.compute_advantages(estimator, R, steps.reward, cuts.offsets, cuts.positions, mask,
                                 groups, **kw)
    oracle = ref.compute_advantages(estimator, R, steps.reward, cuts.offsets, cuts.positions,
                                    mask, groups, **kw)
    assert_f32_close(real.advantages, oracle["advantages64"], list(lengths), "advantages")
    if estimator in RETURNING:
        assert_f32_close(real.returns, oracle["returns64"], list(lengths), "returns")


def test_big_batch_matches_oracle_cuts():
    ids, mask, ent, _ = _big_batch(seed=2, B=16, T=4096)
    real = rc.select_cuts(ids, mask, ent, delimiters=[3, 7], k=20, think_end_id=49)
    oracle = ref.select_cuts(ids, mask, ent, [3, 7], k=20, think_end_id=49)
    for name in ("offsets", "positions", "ends"):
        np.testing.assert_array_equal(getattr(real, name), oracle[name])
