"""Labels from the command line and --bids-filter-file queries."""

from __future__ import annotations

import json

import pytest

from spec2vol_bids.bids.filters import load_filter_file, strip_prefix, to_query
from spec2vol_bids.errors import NoInputError, UsageError


def test_strip_prefix_splits_and_deduplicates():
    assert strip_prefix(["sub-01 sub-02", "03", "01"], "sub-") == ["01", "02", "03"]
    assert strip_prefix("sub-xp101", "sub-") == ["xp101"]
    assert strip_prefix(None, "sub-") is None
    assert strip_prefix([""], "sub-") is None


def test_filter_file(tmp_path):
    from bids.layout import Query

    f = tmp_path / "filters.json"
    f.write_text(json.dumps({"bold": {"run": None, "task": "*", "session": "1"}}))
    spec = load_filter_file(f)
    q = to_query(spec["bold"])
    assert q["run"] is Query.NONE and q["task"] is Query.ANY and q["session"] == "1"
    f.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_filter_file(f)
    f.write_text(json.dumps({"t1w": {}}))
    with pytest.raises(UsageError, match="unknown query"):
        load_filter_file(f)
    with pytest.raises(NoInputError):
        load_filter_file(tmp_path / "missing.json")
