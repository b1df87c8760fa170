"""Coalescing: concurrent /v1/score calls scored in one pass answer exactly as alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from features.dataset import ExampleSet
from features.loading import Export
from features.predictor import ReconversionModel
from features.records import ScoreRequest
from features.requests import request_body
from serving.app import create_app
from serving.coalescing import Coalescer
from serving.model_source import ModelIdentity
from serving.policy import load_policy
from serving.service import Deadline, DeadlineExceeded, Deployment, Scoring, score_requests
from tests.servers import free_port
from tests.serving.conftest import TestClient, api_settings

LEADS = 40


@pytest.fixture(scope="module")
def requests(small_export: Export, training_examples: ExampleSet) -> list[ScoreRequest]:
    """Request bodies of different leads, at several re-scoring offsets."""
    keys = training_examples.keys.drop_duplicates("lead_id")
    rows = np.linspace(0, len(keys) - 1, LEADS).astype(int)
    return [
        ScoreRequest.model_validate(
            request_body(small_export, keys["rejection_id"].iloc[i], keys["as_of"].iloc[i])
        )
        for i in rows
    ]


def _deployment(model: ReconversionModel, version: str, **rebound: Any) -> Deployment:
    policy = load_policy()
    if rebound:
        policy = policy.model_copy(update={"rebound": policy.rebound.model_copy(update=rebound)})
    identity = ModelIdentity("test", None, version, None, None, datetime.now(UTC))
    return Deployment(model, identity, policy)


class _Groups:
    """Records the size of every group a coalescer scores."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, scoring: Scoring, requests: int) -> None:
        assert len(scoring.results) == requests
        self.sizes.append(requests)


async def _score_together(
    coalescer: Coalescer,
    calls: list[tuple[Deployment, ScoreRequest, int, str]],
    seconds: float | list[float],
) -> list[Any]:
    """Every call at once, each with its own time budget (or one budget for all)."""
    budgets = seconds if isinstance(seconds, list) else [seconds] * len(calls)
    return await asyncio.gather(
        *(
            coalescer.score(d, r, top_k=k, request_id=rid, deadline=Deadline(budget))
            for (d, r, k, rid), budget in zip(calls, budgets, strict=True)
        ),
        return_exceptions=True,
    )


def _without_request_id(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "request_id"}


def test_waiting_requests_are_scored_in_one_pass_as_they_would_be_alone(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    deployment = _deployment(model, "1")
    groups = _Groups()
    calls = [(deployment, r, 3, f"id-{i}") for i, r in enumerate(requests)]
    now = datetime.now(UTC)

    results = asyncio.run(_score_together(Coalescer(500, groups), calls, 30))

    assert groups.sizes == [LEADS]
    for index, (request, result) in enumerate(zip(requests, results, strict=True)):
        alone = score_requests(deployment, [request], top_k=3, request_id="x", now=now)
        expected = alone.results[0]
        assert result["request_id"] == f"id-{index}"
        assert result["probability"] == pytest.approx(expected["probability"], abs=1e-12)
        assert _without_request_id(result) == _without_request_id(expected) | {
            "probability": result["probability"]
        }


def test_requests_arriving_over_several_event_loop_turns_share_one_pass(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    deployment = _deployment(model, "1")
    groups = _Groups()
    coalescer = Coalescer(500, groups)

    async def arriving_after(turns: int, request: ScoreRequest) -> dict[str, Any]:
        for _ in range(turns):  # as a request whose bytes are read turns after the first
            await asyncio.sleep(0)
        return await coalescer.score(
            deployment, request, top_k=0, request_id=str(turns), deadline=Deadline(30)
        )

    async def staggered() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(arriving_after(turns, request) for turns, request in enumerate(requests[:12]))
        )

    results = asyncio.run(staggered())

    assert groups.sizes == [12]
    assert [result["request_id"] for result in results] == [str(i) for i in range(12)]


def test_a_lone_request_is_scored_after_one_quiet_turn(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    deployment = _deployment(model, "1")
    groups = _Groups()
    coalescer = Coalescer(500, groups)

    async def late_pair() -> list[dict[str, Any]]:
        first = asyncio.ensure_future(
            coalescer.score(deployment, requests[0], top_k=0, request_id="a", deadline=Deadline(30))
        )
        for _ in range(3):  # the first pass has started by now: the second waits for its own
            await asyncio.sleep(0)
        second = await coalescer.score(
            deployment, requests[1], top_k=0, request_id="b", deadline=Deadline(30)
        )
        return [await first, second]

    results = asyncio.run(late_pair())

    assert groups.sizes == [1, 1]
    assert [result["request_id"] for result in results] == ["a", "b"]


def test_groups_never_mix_model_versions_or_reason_counts(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    old, new = _deployment(model, "1"), _deployment(model, "2")
    groups = _Groups()
    calls = [(old if i % 2 else new, r, i % 3, f"id-{i}") for i, r in enumerate(requests[:12])]

    results = asyncio.run(_score_together(Coalescer(500, groups), calls, 30))

    assert sorted(groups.sizes) == [2, 2, 2, 2, 2, 2]
    for (deployment, _, top_k, request_id), result in zip(calls, results, strict=True):
        assert result["model_version"] == deployment.version
        assert len(result["reasons"]) == top_k
        assert result["request_id"] == request_id


def test_at_most_max_items_are_scored_in_one_pass(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    groups = _Groups()
    calls = [(_deployment(model, "1"), r, 0, str(i)) for i, r in enumerate(requests[:10])]
    deployment = calls[0][0]
    calls = [(deployment, r, k, i) for _, r, k, i in calls]

    results = asyncio.run(_score_together(Coalescer(4, groups), calls, 30))

    assert groups.sizes == [4, 4, 2]
    assert all(isinstance(result, dict) for result in results)


def test_a_spent_time_budget_fails_its_group_with_a_timeout(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    deployment = _deployment(model, "1")
    calls = [(deployment, r, 3, str(i)) for i, r in enumerate(requests[:5])]

    results = asyncio.run(_score_together(Coalescer(500), calls, 0.0))

    assert all(isinstance(result, DeadlineExceeded) for result in results)


def test_only_requests_out_of_time_fail_and_the_others_are_scored(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    deployment = _deployment(model, "1")
    calls = [(deployment, r, 0, str(i)) for i, r in enumerate(requests[:6])]
    budgets = [0.0 if i % 2 else 30.0 for i in range(6)]

    results = asyncio.run(_score_together(Coalescer(500), calls, budgets))

    for index, result in enumerate(results):
        if index % 2:
            assert isinstance(result, DeadlineExceeded)
        else:
            assert result["request_id"] == str(index)


def test_one_request_short_of_time_never_cuts_the_pass_of_the_others(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    # Given one request with 1 ms left and seven with plenty, waiting together
    deployment = _deployment(model, "1")
    groups = _Groups()
    calls = [(deployment, r, 3, str(i)) for i, r in enumerate(requests[:8])]
    budgets = [0.001] + [30.0] * 7

    results = asyncio.run(_score_together(Coalescer(500, groups), calls, budgets))

    # Then the seven are answered by one pass, never re-scored one by one (the first is
    # answered in it too, unless its millisecond ran out before the pass began)
    assert groups.sizes in ([8], [7])
    assert [result["request_id"] for result in results[1:]] == [str(i) for i in range(1, 8)]
    assert isinstance(results[0], DeadlineExceeded) == (groups.sizes == [7])


def test_a_failing_observer_costs_no_request_its_answer(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    def broken_metrics(scoring: Scoring, requests: int) -> None:
        raise RuntimeError("metrics backend down")

    deployment = _deployment(model, "1")
    calls = [(deployment, r, 0, str(i)) for i, r in enumerate(requests[:6])]

    results = asyncio.run(_score_together(Coalescer(500, broken_metrics), calls, 30))

    assert [result["request_id"] for result in results] == [str(i) for i in range(6)]


def test_a_failing_group_is_retried_one_by_one_and_the_coalescer_goes_on(
    model: ReconversionModel, requests: list[ScoreRequest]
) -> None:
    broken = _deployment(model, "broken", recent_intent_feature="no_such_feature")
    good = _deployment(model, "1")
    coalescer = Coalescer(500)
    broken_calls = [(broken, r, 0, str(i)) for i, r in enumerate(requests[:4])]

    async def scenario() -> tuple[list[Any], list[Any]]:
        failed = await _score_together(coalescer, broken_calls, 30)
        after = await _score_together(coalescer, [(good, requests[0], 0, "ok")], 30)
        return failed, after

    failed, after = asyncio.run(scenario())

    assert all(isinstance(result, KeyError) for result in failed)
    assert after[0]["model_version"] == "1"


@pytest.fixture
def live_server(model_dir: Path) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port, in a thread."""
    port = free_port()
    config = uvicorn.Config(
        create_app(api_settings(model_dir)), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            threading.Event().wait(0.1)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _coalesced_sizes(base: str) -> tuple[float, float]:
    total = count = 0.0
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("srl_coalesced_requests_sum"):
            total = float(line.split()[-1])
        elif line.startswith("srl_coalesced_requests_count"):
            count = float(line.split()[-1])
    return total, count


def test_concurrent_calls_on_a_live_server_are_coalesced_and_answer_as_alone(
    live_server: str, model_dir: Path, small_export: Export, training_examples: ExampleSet
) -> None:
    keys = training_examples.keys.drop_duplicates("lead_id").head(32)
    bodies = [
        request_body(small_export, rid, as_of)
        for rid, as_of in zip(keys["rejection_id"], keys["as_of"], strict=True)
    ]
    with TestClient(create_app(api_settings(model_dir, coalesce=False))) as alone:
        expected = [alone.post("/v1/score", json=body).json() for body in bodies]

    async def all_at_once() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(base_url=live_server, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/score", json=body, headers={"X-Request-ID": f"call-{i}"})
                    for i, body in enumerate(bodies)
                )
            )

    answers = asyncio.run(all_at_once())

    for index, (answer, reference) in enumerate(zip(answers, expected, strict=True)):
        assert answer.status_code == 200
        result = answer.json()
        assert result["request_id"] == f"call-{index}"
        assert result["probability"] == pytest.approx(reference["probability"], abs=1e-12)
        assert result["program"] == reference["program"]
        assert result["reasons"] == reference["reasons"]
    scored, passes = _coalesced_sizes(live_server)
    assert scored == len(bodies)
    assert passes < len(bodies)  # at least one pass scored several calls
