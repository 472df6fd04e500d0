"""Sender identity through the HTTP API: verified senders, spoofing, strict mode, the footer.

Real daemon app, real tmux panes running the fake agent; what is asserted is what the
agent submitted (its log), the delivery records and the audit rows.
"""

from __future__ import annotations

import pytest

from telepty.api.keys import REGISTRY, TRUST
from telepty.config import Config
from telepty.delivery.reply_guide import reply_footer
from telepty.sessions.identity import token_sha256
from tests.helpers import client_final, wait_until
from tests.integration.identity_helpers import agent_panes, register_sender

pytestmark = pytest.mark.integration

HEADER = "x-telepty-session-token"


async def test_a_session_token_makes_the_sender_verified(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    panes = await agent_panes(client, session, tmp_path, ["other"])
    token = await register_sender(client, "me")
    resp = await client.post("/api/sessions/other/inject", json={"prompt": "hello from me"},
                             headers={HEADER: token})
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert body["verified_sender"] == "me" and body["spoofed"] is False
    d = await client_final(client, body["delivery_id"])
    assert d["status"] == "delivered"
    assert (d["verified_sender"], d["from"], d["reply_to"], d["spoofed"]) == ("me", "me", "me", False)
    await wait_until(lambda: panes["other"].files.submissions() == ["hello from me"], message="submission")
    rows = await (await client.get("/api/injects", params={"to": "other"})).json()
    assert [(r["verified_sender"], r["spoofed"]) for r in rows] == [("me", False)]


async def test_a_from_naming_someone_else_is_flagged_spoofed(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    panes = await agent_panes(client, session, tmp_path, ["other"])
    token = await register_sender(client, "me")
    await register_sender(client, "boss")
    resp = await client.post("/api/sessions/other/inject", json={"prompt": "do it", "from": "boss"},
                             headers={HEADER: token})
    assert resp.status == 202
    d = await client_final(client, (await resp.json())["delivery_id"])
    assert (d["from"], d["verified_sender"], d["spoofed"]) == ("boss", "me", True)
    await wait_until(lambda: panes["other"].files.submissions() == ["do it"], message="submission")
    rows = await (await client.get("/api/injects")).json()
    assert [(r["from"], r["verified_sender"], r["spoofed"]) for r in rows] == [("boss", "me", True)]
    # Its own name (or alias) is no spoof, and without a token there is nothing to contradict.
    resp = await client.post("/api/sessions/other/inject", json={"prompt": "x", "from": "me"},
                             headers={HEADER: token})
    assert (await resp.json())["spoofed"] is False
    resp = await client.post("/api/sessions/other/inject", json={"prompt": "y", "from": "boss"})
    assert (await resp.json())["verified_sender"] is None and (await resp.json())["spoofed"] is False


async def test_strict_mode_refuses_spoofed_and_unknown_tokens(aiohttp_client, config: Config, session,  # type: ignore[no-untyped-def]
                                                              tmp_path) -> None:
    from telepty.daemon import create_app

    client = await aiohttp_client(create_app(config.with_(require_token=True)))
    auth = {"x-telepty-token": client.server.app[TRUST].token}
    client.session.headers.update(auth)
    panes = await agent_panes(client, session, tmp_path, ["other"])
    token = await register_sender(client, "me")
    resp = await client.post("/api/sessions/other/inject", json={"prompt": "forged", "from": "boss"},
                             headers={HEADER: token})
    assert resp.status == 403
    assert (await resp.json())["error"] == "sender_spoofed"
    resp = await client.post("/api/sessions/other/inject", json={"prompt": "stale"},
                             headers={HEADER: "tpst_not-a-real-token"})
    assert resp.status == 403
    assert (await resp.json())["error"] == "invalid_session_token"
    # Refused means nothing happened: no record, no audit row.
    assert await (await client.get("/api/deliveries")).json() == []
    assert await (await client.get("/api/injects")).json() == []
    # The honest request goes through.
    resp = await client.post("/api/sessions/other/inject", json={"prompt": "honest", "wait": True},
                             headers={HEADER: token})
    assert resp.status == 200, await resp.text()
    await wait_until(lambda: panes["other"].files.submissions() == ["honest"], message="honest one")


async def test_an_unknown_token_outside_strict_mode_is_unverified_with_a_warning(client) -> None:  # type: ignore[no-untyped-def]
    await register_sender(client, "target")
    resp = await client.post("/api/sessions/target/inject", json={"prompt": "p"},
                             headers={HEADER: "tpst_nope"})
    assert resp.status == 202
    body = await resp.json()
    assert body["verified_sender"] is None
    assert any(w.startswith("invalid_session_token") for w in body["warnings"])


async def test_reply_expected_adds_the_footer_unless_the_message_closes(client, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    panes = await agent_panes(client, session, tmp_path, ["other"])
    token = await register_sender(client, "me")
    for prompt in ("what do you think?", "ack received, no further reply needed"):
        resp = await client.post("/api/sessions/other/inject",
                                 json={"prompt": prompt, "reply_expected": True, "wait": True},
                                 headers={HEADER: token})
        assert resp.status == 200, await resp.text()
    expected = ["what do you think?" + reply_footer("me"), "ack received, no further reply needed"]
    await wait_until(lambda: panes["other"].files.submissions() == expected, message="both submitted")


async def test_tokens_and_their_hashes_never_appear_in_answers(client) -> None:  # type: ignore[no-untyped-def]
    token = await register_sender(client, "me")
    await client.post("/api/sessions/me/inject", json={"prompt": "p"}, headers={HEADER: token})
    texts = []
    for path in ("/api/sessions", "/api/sessions/me", "/api/deliveries", "/api/injects", "/api/identity",
                 "/api/meta"):
        resp = await client.get(path, headers={HEADER: token})
        assert resp.status == 200, path
        texts.append(await resp.text())
    blob = "\n".join(texts)
    assert token not in blob and token_sha256(token) not in blob
    me = await (await client.get("/api/identity", headers={HEADER: token})).json()
    assert me["session_id"] == "me" and me["verified"] is True
    resp = await client.get("/api/identity")
    assert resp.status == 400 and (await resp.json())["error"] == "no_session_identity"


async def test_a_token_of_an_exited_session_proves_nothing(client) -> None:  # type: ignore[no-untyped-def]
    from telepty.sessions.model import SessionState

    token = await register_sender(client, "me")
    await register_sender(client, "target")
    await client.server.app[REGISTRY].set_state("me", SessionState.EXITED)
    resp = await client.post("/api/sessions/target/inject", json={"prompt": "p"}, headers={HEADER: token})
    assert (await resp.json())["verified_sender"] is None


async def test_wrapper_hello_binds_the_token_hash(client) -> None:  # type: ignore[no-untyped-def]
    """The wrapper sends only the hash; a bad hash is refused before anything registers."""
    import os

    from telepty.sessions.identity import new_session_token

    token = new_session_token()
    async with client.ws_connect("/api/wrap") as ws:
        await ws.send_json({"type": "hello", "session_id": "bad", "command": "x", "cwd": "/",
                            "pid": os.getpid(), "session_token_sha256": "nope"})
        msg = await ws.receive_json()
        assert msg["type"] == "error" and msg["error"] == "invalid_hello"
    assert (await client.get("/api/sessions/bad")).status == 404
    async with client.ws_connect("/api/wrap") as ws:
        await ws.send_json({"type": "hello", "session_id": "w1", "command": "x", "cwd": "/",
                            "pid": os.getpid(), "session_token_sha256": token_sha256(token)})
        msg = await ws.receive_json()
        assert msg["type"] == "welcome" and "session_token" not in msg
        me = await (await client.get("/api/identity", headers={HEADER: token})).json()
        assert me["session_id"] == "w1"
