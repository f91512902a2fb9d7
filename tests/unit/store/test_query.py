"""The /api/metrics/activity filters: llama-swap's parseActivityQuery rules."""

from __future__ import annotations

import pytest

from llamaswap.store.query import BadFilter, parse_query


def params(query: str) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(query, keep_blank_values=True)


def test_defaults() -> None:
    query = parse_query({})
    assert (query.limit, query.page, query.sort, query.order) == (25, 1, "id", "desc")
    assert query.filter.where() == ("", [])


def test_repeated_models_times_and_ids_make_one_where_clause() -> None:
    query = parse_query(
        params("model=a&model=b&start=1970-01-01T00:16:40Z&end=1970-01-01T00:16:43Z&min_id=2")
    )
    where, args = query.filter.where()
    assert where == " WHERE model_id IN (?, ?) AND ts_created >= ? AND ts_created <= ? AND id >= ?"
    assert args == ["a", "b", 1000, 1003, 2]


def test_offsets_in_times_are_honoured() -> None:
    assert parse_query(params("start=1970-01-01T01:16:40%2B01:00")).filter.start == 1000


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("min_id=abc", "min_id"),
        ("max_id=0", "max_id"),
        ("min_id=-1", "min_id"),
        ("min_id=9&max_id=2", "min_id"),
        ("start=nonsense", "start"),
        ("end=2026-01-01", "end"),
        ("start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z", "start"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("limit=x", "limit"),
        ("page=0", "page"),
        ("sort=drop table", "sort"),
        ("order=up", "order"),
    ],
)
def test_bad_filters_name_their_field(query: str, field: str) -> None:
    with pytest.raises(BadFilter) as caught:
        parse_query(params(query))
    assert caught.value.field == field


def test_sort_keys_map_to_columns_only_through_the_whitelist() -> None:
    assert parse_query(params("sort=generated&order=ASC")).order_by() == (
        " ORDER BY output_tokens ASC, id ASC"
    )
    assert parse_query(params("sort=id")).order_by() == " ORDER BY id DESC"
