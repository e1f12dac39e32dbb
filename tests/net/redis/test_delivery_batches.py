"""The Redis pump delivers in batches: messages that reach a node in one
pub/sub read go to each local subscriber as one write, in order (a real
redis-server; writes are counted at the subscriber's socket, never timed)."""

from __future__ import annotations

from typing import Any

import coredis
import trio
from wsproto.events import TextMessage

from realtime.net.redis import lua
from realtime.protocol import replies
from tests.helpers.redis import RedisServer, redis_node_settings
from tests.helpers.sends import count_sends, ws_text_payloads
from tests.helpers.ws import RawClient, loads

# What the broker's publish script does, BURST times in one script: Redis
# then writes every PUBLISH to the node's pub/sub connection at once.
BURST_SCRIPT = """
for i = 1, tonumber(ARGV[1]) do
  local seq = redis.call('INCR', KEYS[1])
  local body = ARGV[2] .. seq .. ARGV[3]
  redis.call('XADD', KEYS[2], seq .. '-0', 'm', body)
  redis.call('PUBLISH', KEYS[3], 'M' .. seq .. ' ' .. body)
end
"""
BURST = 8
CHANNEL = "chat:burst"


async def test_messages_from_one_pubsub_read_reach_a_subscriber_as_one_write(
        start_server: Any, make_settings: Any, redis: RedisServer) -> None:
    node = await start_server(redis_node_settings(make_settings, redis))
    name = CHANNEL.encode()
    prefix = b'{"type":"message","channel":' + replies.encode_json(CHANNEL) + b',"seq":'
    suffix = b',"from":"bob","data":{}}'
    with trio.fail_after(20):
        client = await RawClient.open(node, node.mint(sub="carol", scope="chat:read"))
        try:
            await client.send(type="subscribe", id="s", channel=CHANNEL)
            await client.until_id("s")
            session = next(s for s in node.server.sessions if s.sub == "carol")
            sends = count_sends(session.transport).sends
            async with coredis.Redis.from_url(redis.url) as raw:
                await raw.eval(BURST_SCRIPT, keys=[lua.PREFIX_COUNTER + name, lua.PREFIX_STREAM + name,
                                                   lua.PREFIX_CHANNEL + name], args=[BURST, prefix, suffix])
            seqs: list[int] = []
            while len(seqs) < BURST:
                seqs += [loads(e.data)["seq"] for e in await client.events() if isinstance(e, TextMessage)]
        finally:
            await trio.aclose_forcefully(client.stream)
    assert seqs == list(range(1, BURST + 1))
    assert len(sends) == 1, [len(ws_text_payloads(s)) for s in sends]
    assert [loads(p)["seq"] for p in ws_text_payloads(sends[0])] == seqs
