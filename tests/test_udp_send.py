"""UDP answers are sent together at the end of the burst of datagrams the loop read in one
go: every answer, in order, to its own client, with the queue bounded whatever the loop does."""

from __future__ import annotations

import asyncio
import socket
from typing import cast

import dns.message
import uvloop

from nameserver.serve.responder import Responder
from nameserver.server import MAX_PENDING_UDP_ANSWERS, UdpHandler
from tests.packets import UdpCapture, udp_exchange
from tests.zonedata import registry

NAMES = ("host.example.test.", "example.test.", "nx.example.test.", "www.example.test.")


def queries(count: int) -> list[tuple[bytes, tuple[str, int]]]:
    """``count`` queries with distinct IDs from distinct client ports, hits and misses mixed."""
    out = []
    for i in range(count):
        query = dns.message.make_query(NAMES[i % len(NAMES)], "A")
        query.id = i + 1
        out.append((query.to_wire(), ("127.0.0.1", 20000 + i)))
    return out


def test_a_bursts_answers_go_out_when_the_loop_turns_in_order_to_each_client() -> None:
    handler = UdpHandler(Responder(registry()))
    capture = UdpCapture()
    handler.connection_made(cast(asyncio.DatagramTransport, capture))
    burst = queries(10)

    async def receive() -> int:
        for data, addr in burst:
            handler.datagram_received(data, addr)
        held = len(capture.sent)
        await asyncio.sleep(0)
        return held

    assert asyncio.run(receive()) == 0
    assert [addr for _, addr in capture.sent] == [addr for _, addr in burst]
    for (answer, _), (query, _) in zip(capture.sent, burst, strict=True):
        parsed = dns.message.from_wire(answer)
        assert parsed.id == dns.message.from_wire(query).id
        assert parsed.question == dns.message.from_wire(query).question


def test_the_queue_is_sent_at_once_when_it_reaches_its_bound() -> None:
    handler = UdpHandler(Responder(registry()))
    capture = UdpCapture()
    handler.connection_made(cast(asyncio.DatagramTransport, capture))
    burst = queries(MAX_PENDING_UDP_ANSWERS * 2 + 5)
    held: list[int] = []

    async def receive() -> None:
        for data, addr in burst:
            handler.datagram_received(data, addr)
            held.append(len(handler._pending))
        await asyncio.sleep(0)

    asyncio.run(receive())
    assert max(held) == MAX_PENDING_UDP_ANSWERS - 1
    assert [addr for _, addr in capture.sent] == [addr for _, addr in burst]


def test_answers_held_when_the_socket_closes_are_dropped() -> None:
    handler = UdpHandler(Responder(registry()))
    capture = UdpCapture()
    handler.connection_made(cast(asyncio.DatagramTransport, capture))

    async def receive() -> None:
        for data, addr in queries(3):
            handler.datagram_received(data, addr)
        handler.connection_lost(None)
        await asyncio.sleep(0)

    asyncio.run(receive())
    assert capture.sent == []
    assert udp_exchange(handler, queries(2))  # a new transport serves again


def test_a_burst_over_a_real_socket_on_uvloop_is_answered_in_full() -> None:
    """Against a socket on 127.0.0.1 served by the loop `zonefan serve` runs: every one of a
    burst sent without waiting comes back, matched by ID and question."""
    count = 100
    burst = queries(count)

    async def exchange() -> dict[int, dns.message.Message]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: UdpHandler(Responder(registry())), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        client.setblocking(False)
        client.connect(("127.0.0.1", port))
        answers: dict[int, dns.message.Message] = {}
        try:
            for data, _ in burst:
                client.send(data)
            while len(answers) < count:
                data = await asyncio.wait_for(loop.sock_recv(client, 65535), 5)
                message = dns.message.from_wire(data)
                answers[message.id] = message
        finally:
            client.close()
            transport.close()
        return answers

    answers = uvloop.run(exchange())
    assert sorted(answers) == list(range(1, count + 1))
    direct = Responder(registry())
    for data, _ in burst:
        expected = direct.respond(data, tcp=False)
        assert expected is not None
        assert answers[dns.message.from_wire(data).id] == dns.message.from_wire(expected)
    assert sum(1 for a in answers.values() if a.answer) == count // 2  # host and www
