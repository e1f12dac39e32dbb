"""Request values: the target split into path and query."""

from __future__ import annotations

from realtime.http.request import Request, split_target


def test_request_targets_split_without_reading_a_host() -> None:
    # "//[" made urlsplit raise (a fuzz find); "//x/y" is a path, not a host.
    assert split_target("//[") == ("//[", "")
    assert split_target("//evil.example/oauth2/token?a=1") == ("//evil.example/oauth2/token", "a=1")
    assert split_target("/api/publish?channel=c&x=") == ("/api/publish", "channel=c&x=")
    assert split_target("http://host/p?q=1") == ("/p", "q=1")
    assert split_target("http://[") == ("http://[", "")
    assert Request("GET", "//[?a=b", ()).query == {"a": ["b"]}
