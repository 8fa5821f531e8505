"""Page tokens are opaque, round-trip, and refuse anything this list did not issue."""

from __future__ import annotations

import base64
import json

import pytest

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as data_pb
from atlas_core import proto_convert as pc
from atlas_core.errors import InvalidArgument


def _page(token: str = "", size: int = 0) -> common_pb2.PageRequest:
    return common_pb2.PageRequest(page_token=token, page_size=size)


def _refused(token: str, scope: str = "") -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        pc.page_window(_page(token), scope)
    assert caught.value.reason == "BAD_PAGE_TOKEN"
    return caught.value


def test_token_round_trips_the_offset() -> None:
    for offset in (0, 1, 100, 12_345, 2**40):
        token = pc.encode_page_token(offset, "scope-a")
        assert pc.page_window(_page(token, 10), "scope-a") == (offset, 10)


def test_token_is_not_a_bare_offset() -> None:
    token = pc.page_response(0, 100, has_more=True).next_page_token
    assert token and token != "100" and not token.isdigit()
    assert "=" not in token and "/" not in token and "+" not in token  # URL-safe, unpadded
    _refused("100")  # what the old tokens looked like


def test_last_page_has_no_token_and_total_defaults_to_unknown() -> None:
    last = pc.page_response(200, 100, has_more=False)
    assert last.next_page_token == ""
    assert last.total_size == -1
    assert pc.page_response(0, 100, has_more=False, total_size=0).total_size == 0
    assert pc.page_response(0, 10, has_more=True, total_size=57).total_size == 57


@pytest.mark.parametrize(
    "token",
    ["x", "!!!", "e30", base64.urlsafe_b64encode(b"\xff\xfe").decode(), "eyJ2IjoxfQ"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    _refused(token)


def _rewrite(token: str, **changes: object) -> str:
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body.update(changes)
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_tampered_offset_is_refused() -> None:
    token = pc.encode_page_token(100, "scope-a")
    assert pc.page_window(_page(_rewrite(token)), "scope-a") == (100, pc.DEFAULT_PAGE_SIZE)
    _refused(_rewrite(token, o=5000), "scope-a")
    _refused(_rewrite(token, o=-1), "scope-a")
    _refused(_rewrite(token, o=True), "scope-a")
    _refused(_rewrite(token, v=2), "scope-a")
    _refused(_rewrite(token, extra=1), "scope-a")


def test_token_of_another_list_or_filter_is_refused() -> None:
    first = data_pb.ListDatasetsRequest(name_prefix="sales")
    same_filter_bigger_page = data_pb.ListDatasetsRequest(
        name_prefix="sales", page=common_pb2.PageRequest(page_size=500)
    )
    other_filter = data_pb.ListDatasetsRequest(name_prefix="churn")
    other_list = data_pb.ListFeatureGroupsRequest(name_prefix="sales")
    assert pc.list_scope(first) == pc.list_scope(same_filter_bigger_page)
    token = pc.page_response(0, 10, True, 25, scope=pc.list_scope(first)).next_page_token
    assert pc.page_window(_page(token), pc.list_scope(same_filter_bigger_page))[0] == 10
    error = _refused(token, pc.list_scope(other_filter))
    assert "next_page_token unchanged" in error.message
    _refused(token, pc.list_scope(other_list))
    _refused(token)  # a scoped token is not a scope-less one either


def test_negative_page_size_is_refused() -> None:
    with pytest.raises(InvalidArgument) as caught:
        pc.page_window(_page(size=-1))
    assert caught.value.reason == "BAD_PAGE"


def test_page_size_is_clamped_and_defaulted() -> None:
    assert pc.page_window(_page()) == (0, pc.DEFAULT_PAGE_SIZE)
    assert pc.page_window(_page(size=10**6)) == (0, pc.MAX_PAGE_SIZE)
