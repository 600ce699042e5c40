"""The promotion a gate evaluation reads comes from the aggregate cache and is brought up to date
from the store: it is always the stored state, and what a caller does to it stays its own."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import pytest

from contracts.governance import RegisterVersion, RequestPromotion
from domain.authz import Principal
from domain.errors import ConcurrencyConflict
from domain.governance_app import GateOutcome, ReplayIds, inputs_from_store
from domain.pearl_app import PearlApp
from domain.promotion import Promotion

COMMIT = "b" * 40


@pytest.fixture
def operator_(org: str, principal_of: Callable[..., Principal]) -> Principal:
    return principal_of(org, "admin")


@pytest.fixture
def promotion_id(app: PearlApp, project: UUID, operator_: Principal) -> UUID:
    app.register_version(operator_, project, RegisterVersion(version="1.0.0", commit=COMMIT))
    result = app.request_promotion(operator_, project, RequestPromotion(version="1.0.0", to="dev"))
    return UUID(result.ids["id"])


def _evaluate(app: PearlApp, promotion_id: UUID) -> GateOutcome:
    promotion = app.promotion_for_gate(promotion_id)
    ids = ReplayIds(findings=[], exceptions=[], scans=[], tests=[])
    inputs, _ = inputs_from_store(app, promotion, ids, None, app.now())
    position = app.recorder.max_notification_id() or 0
    return app.record_gate(promotion_id, inputs, position, "manual", position)


def _stored(app: PearlApp, promotion_id: UUID) -> Promotion:
    return app.load(Promotion, promotion_id, "promotion")


def test_kept_promotion_follows_events_saved_elsewhere(
    app: PearlApp, promotion_id: UUID, operator_: Principal
) -> None:
    _evaluate(app, promotion_id)
    app.reject_promotion(operator_, promotion_id, "withdrawn")  # saved without the gate

    promotion = app.promotion_for_gate(promotion_id)

    assert promotion.status == "rejected"
    assert promotion.version == _stored(app, promotion_id).version
    assert _evaluate(app, promotion_id).decision is None  # closed: nothing recorded


def test_decisions_recorded_one_after_another_are_all_kept(
    app: PearlApp, promotion_id: UUID
) -> None:
    for _ in range(3):
        assert _evaluate(app, promotion_id).decision is not None

    kept, stored = app.promotion_for_gate(promotion_id), _stored(app, promotion_id)

    assert len(kept.evaluations) == 3
    assert (kept.version, kept.evaluations) == (stored.version, stored.evaluations)


def test_changing_the_promotion_read_leaves_the_kept_one_as_stored(
    app: PearlApp, promotion_id: UUID
) -> None:
    _evaluate(app, promotion_id)
    read = app.promotion_for_gate(promotion_id)
    read.evaluations.append({"decision_id": "not stored"})
    read.status = "passed"

    assert app.promotion_for_gate(promotion_id).evaluations == (
        _stored(app, promotion_id).evaluations
    )


def test_a_decision_that_fails_to_save_is_not_kept(
    app: PearlApp, promotion_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    _evaluate(app, promotion_id)

    def conflict(*args: object, **kwargs: object) -> None:
        raise ConcurrencyConflict("another change was saved first")

    with monkeypatch.context() as patched:
        patched.setattr(app, "commit", conflict)
        with pytest.raises(ConcurrencyConflict):
            _evaluate(app, promotion_id)

    assert len(app.promotion_for_gate(promotion_id).evaluations) == 1
    assert _evaluate(app, promotion_id).decision_id is not None
    assert len(app.promotion_for_gate(promotion_id).evaluations) == 2
