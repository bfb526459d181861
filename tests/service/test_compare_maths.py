"""Golden values of the comparison maths (agreement, latency) and of the teacher-endpoint settings."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from service.agreement import agreement, kendall_tau_shared, latency_stats, mean_agreement, ndcg_vs_reference, overlap_at_k, rank_biased_overlap
from service.comparison import Target, summarise
from service.remote import Endpoint, Reply, parse_endpoints
from service.settings import Settings


def test_identical_and_disjoint_lists():
    a = ["1", "2", "3", "4"]
    assert agreement(a, list(a), 4) == {"overlap_at_k": 1.0, "rbo": pytest.approx(1.0), "kendall_tau": 1.0, "ndcg_at_k": pytest.approx(1.0)}
    b = ["5", "6", "7", "8"]
    assert agreement(b, a, 4) == {"overlap_at_k": 0.0, "rbo": 0.0, "kendall_tau": None, "ndcg_at_k": 0.0}
    assert kendall_tau_shared(list(reversed(a)), a) == -1.0


def test_golden_values_by_hand():
    # swapped top two: X_1 = 0, X_2 = 2, X_3 = 3 → RBO = 3/3·0.9³ + (0.1/0.9)·(0 + 2/2·0.9² + 3/3·0.9³)
    assert rank_biased_overlap(["b", "a", "c"], ["a", "b", "c"]) == pytest.approx(0.729 + (0.81 + 0.729) / 9)
    assert rank_biased_overlap(["b", "a", "c"], ["a", "b", "c"]) == pytest.approx(0.9)
    assert kendall_tau_shared(["b", "a", "c"], ["a", "b", "c"]) == pytest.approx(1 / 3)  # 2 concordant, 1 discordant
    # one foreign item in second place: overlap 2/3, NDCG = (1 + 1/log2 4) / (1 + 1/log2 3 + 1/log2 4)
    cand, ref = ["a", "x", "b"], ["a", "b", "c"]
    assert overlap_at_k(cand, ref) == pytest.approx(2 / 3)
    assert ndcg_vs_reference(cand, ref, 3) == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert rank_biased_overlap(cand, ref) == pytest.approx((2 / 3) * 0.729 + (0.9 + 0.5 * 0.81 + (2 / 3) * 0.729) / 9)
    assert kendall_tau_shared(cand, ref) == 1.0


def test_mean_agreement_skips_undefined_tau_and_latency_stats():
    pairs = [(["a", "b"], ["a", "b"]), (["x", "y"], ["a", "b"])]
    m = mean_agreement(pairs, 2)
    assert m["users"] == 2 and m["overlap_at_k"] == 0.5 and m["kendall_tau"] == 1.0  # τ only defined for the first user
    assert mean_agreement([], 2)["overlap_at_k"] is None
    s = latency_stats([0.001, 0.002, 0.003, 0.004, 0.100])
    assert s["p50_ms"] == pytest.approx(3.0) and s["mean_ms"] == pytest.approx(22.0)
    assert latency_stats([])["p99_ms"] is None


def test_summarise_counts_errors_and_agreement_against_the_reference():
    targets = [Target("teacher", "endpoint", "http://t"), Target("student", "local", "http://s", "student")]
    users = ["1", "2", "3"]
    replies = [
        [Reply(0.010, ["a", "b"]), Reply(0.020, error="timeout"), Reply(0.012, ["c", "d"])],
        [Reply(0.002, ["a", "b"]), Reply(0.002, ["a", "b"]), None],  # the third user was never asked: left out everywhere
    ]
    out = summarise(targets, users, replies, k=2, concurrency=1, timeout=0.5, wall=1.0, stopped_early=True)
    teacher, student = out["targets"]
    assert out["users_done"] == 2 and out["reference"] == "teacher" and out["stopped_early"]
    assert (teacher["requests"], teacher["ok"], teacher["errors"], teacher["timeouts"]) == (2, 1, 1, 1)
    assert teacher["error_kinds"] == {"timeout": 1} and teacher["p50_ms"] == pytest.approx(10.0)
    assert student["ok"] == 2 and student["throughput_rps"] == pytest.approx(500.0)  # 1 in flight / 2 ms
    assert out["requests_per_second"] == pytest.approx(4.0)  # 2 users × 2 targets in 1 s
    assert student["agreement"]["users"] == 1 and student["agreement"]["overlap_at_k"] == 1.0  # only user 1: both answered
    assert student["speedup_p50_vs_reference"] == pytest.approx(5.0)


def test_endpoint_settings_parse_and_explain_errors():
    eps = parse_endpoints(" t=http://127.0.0.1:8002#ml100k-teacher , u=https://teacher.example/prefix/ ")
    assert eps == {"t": Endpoint("t", "http://127.0.0.1:8002", "ml100k-teacher"), "u": Endpoint("u", "https://teacher.example/prefix", None)}
    assert Endpoint("t", "http://x", "m").body("7", 5) == {"user_id": "7", "k": 5, "model": "m"}
    bad = {
        "t=ftp://x": "not an http:// or https:// URL",
        "t=http://a,t=http://b": "given twice",
        "no-url": "is not 'name=URL'",
        "t=http://x:99999": "invalid port",
        "t=http://x?a=1": "query string",
    }
    for value, message in bad.items():
        with pytest.raises(ValidationError, match=message):
            Settings(_env_file=None, teacher_endpoints=value)
    with pytest.raises(ValidationError, match="DISTILLREC_SHADOW_ENDPOINT='nope' is not in DISTILLREC_TEACHER_ENDPOINTS"):
        Settings(_env_file=None, teacher_endpoints="t=http://x", shadow_endpoint="nope")
    with pytest.raises(ValidationError, match="DISTILLREC_SHADOW_ENDPOINT is not set"):
        Settings(_env_file=None, shadow_fraction=0.1)
    assert Settings(_env_file=None).shadow_fraction == 0.0  # shadow mode is off by default
