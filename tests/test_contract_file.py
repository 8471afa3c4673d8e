from __future__ import annotations

import pytest
from jsonschema import FormatChecker

from tests.contract import CONTRACT, SHARED_CONTRACT, assert_matches_contract, spec


def test_vendored_contract_is_the_shared_one() -> None:
    if not SHARED_CONTRACT.exists():
        pytest.skip("no shared/ checkout beside the repository")
    assert CONTRACT.read_bytes() == SHARED_CONTRACT.read_bytes()


def test_validator_rejects_a_wrong_body() -> None:
    """The contract check itself can fail: a missing field and a wrong enum value are caught."""
    assert "date-time" in FormatChecker().checkers  # rfc3339-validator is installed, so formats are checked
    with pytest.raises(AssertionError, match="requiresAuth"):
        assert_matches_contract(201, {"data": {"id": "x"}})
    with pytest.raises(AssertionError):
        assert_matches_contract(400, {"error": {"title": "ValidationError"}})
    assert spec()["openapi"] == "3.1.0"
