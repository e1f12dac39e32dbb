"""Chromium's native ``EventSource`` against a real server (SPEC §13):
a ticket from ``POST /api/ticket``, ``new EventSource('/sse?ticket=...')``
on a page the server serves (``/demo/``), live messages, and a resume with
``?last_event_id=`` (``EventSource`` cannot set headers, and its own
reconnect would reuse a spent ticket) that misses nothing.

Launched by path like tests/api/test_demo_browser.py; a missing browser
fails, naming what to install, never skips.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import pytest
import trio

from realtime.config.settings import Settings
from tests.helpers.browser import TIMEOUT_MS, launch_chromium, need_browser
from tests.helpers.server import Running
from tests.helpers.ws import api_publish


pytestmark = pytest.mark.timeout(120)

OPEN = """async ([token, query]) => {
  const answer = await fetch('/api/ticket', {method: 'POST', headers: {authorization: 'Bearer ' + token}});
  const {ticket, expires_in} = await answer.json();
  window.events = [];
  const source = new EventSource('/sse?ticket=' + encodeURIComponent(ticket) + query);
  window.source = source;
  for (const name of ['welcome', 'message', 'recovered', 'close']) {
    source.addEventListener(name, (e) => window.events.push({name, data: JSON.parse(e.data), id: e.lastEventId}));
  }
  source.onerror = () => source.close();  // a spent ticket cannot reconnect: the page takes a new one
  return expires_in;
}"""


async def test_native_event_source_with_a_ticket_and_a_resume(start_server: Callable[..., Any],
                                                              make_settings: Callable[..., Settings]) -> None:
    sync_api = need_browser()
    base = make_settings(server={"https": None})
    running: Running = await start_server(attrs.evolve(base, demo=attrs.evolve(base.demo, enabled=True)))
    origin = running.url("")
    token = running.mint()

    def publish(data: Any) -> None:
        answer = trio.from_thread.run(api_publish, running, "chat:lobby", data, token)
        assert answer.status_code == 200

    def scenario() -> None:
        with sync_api.sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                page = browser.new_page(bypass_csp=True)  # for wait_for_function; EventSource is unaffected
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(origin + "/demo/")
                assert page.evaluate(OPEN, [token, "&channel=chat:lobby"]) == 30
                page.wait_for_function("window.events.length >= 1")
                welcome = page.evaluate("window.events[0]")
                assert welcome["name"] == "welcome" and welcome["data"]["sub"] == "alice"
                assert welcome["id"] == "chat:lobby=0"
                publish({"n": 1})
                page.wait_for_function("window.events.length >= 2")
                message = page.evaluate("window.events[1]")
                assert message["data"] == {"type": "message", "channel": "chat:lobby", "seq": 1,
                                           "from": "alice", "data": {"n": 1}}
                last_id = page.evaluate("window.events[window.events.length - 1].id")  # MessageEvent.lastEventId
                assert last_id == "chat:lobby=1"
                page.evaluate("window.source.close()")
                publish({"n": 2})  # while the page has no stream
                publish({"n": 3})
                page.evaluate(OPEN, [token, "&channel=chat:lobby&last_event_id=" + last_id])
                page.wait_for_function("window.events.length >= 4")
                publish({"n": 4})
                page.wait_for_function("window.events.length >= 5")
                events = page.evaluate("window.events")
                assert [e["name"] for e in events] == ["welcome", "recovered", "message", "message", "message"]
                assert events[1]["data"] == {"recovered": True}
                assert [e["data"]["data"]["n"] for e in events[2:]] == [2, 3, 4]
                assert events[-1]["id"] == "chat:lobby=4"
            finally:
                browser.close()

    await trio.to_thread.run_sync(scenario)
