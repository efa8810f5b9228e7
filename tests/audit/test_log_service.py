"""The audit service on a real Tansu broker and PostgreSQL, checked by an outside verifier.

The verifier below knows only RFC 9162 section 2.1 and the C2SP checkpoint format: it imports
nothing of the service (only ``cryptography`` for Ed25519), recomputes the root from
``/v1/log/entries`` and checks the served proofs with its own recursive formulation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import catalog
from contracts.topics import TOPICS, topic_for_type
from services.audit.main import create_app
from services.audit.settings import Settings
from services.kit.messaging import create_producer, ensure_topics
from tests.audit.helpers import AUDITOR, auth
from tests.kit.helpers import envelope, eventually, fresh_database
from tests.support import free_port, serving

pytestmark = pytest.mark.integration


# --- the outside verifier ------------------------------------------------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def outside_mth(leaf_hashes: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, recursively."""
    if not leaf_hashes:
        return _h(b"")
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = _split(len(leaf_hashes))
    return _h(b"\x01" + outside_mth(leaf_hashes[:k]) + outside_mth(leaf_hashes[k:]))


def outside_inclusion_root(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """The root PATH(index, D[size]) leads to (the path is listed from the leaf up)."""
    if size == 1:
        assert path == []
        return leaf
    k = _split(size)
    *rest, sibling = path
    if index < k:
        return _h(b"\x01" + outside_inclusion_root(index, k, leaf, rest) + sibling)
    return _h(b"\x01" + sibling + outside_inclusion_root(index - k, size - k, leaf, rest))


def outside_consistency(
    m: int, n: int, proof: list[bytes], old_root: bytes, whole: bool = True
) -> tuple[bytes, bytes]:
    """(old hash, new hash) that SUBPROOF(m, D[n], whole) leads to."""
    if m == n:
        if whole:
            assert proof == []
            return old_root, old_root
        assert len(proof) == 1
        return proof[0], proof[0]
    k = _split(n)
    *rest, sibling = proof
    if m <= k:
        old, new = outside_consistency(m, k, rest, old_root, whole)
        return old, _h(b"\x01" + new + sibling)
    old, new = outside_consistency(m - k, n - k, rest, old_root, False)
    return _h(b"\x01" + sibling + old), _h(b"\x01" + sibling + new)


def outside_open_checkpoint(note: str, key: str) -> tuple[str, int, bytes]:
    """Check the note's Ed25519 signature with the verifier key; return its tree head."""
    name, key_hash, encoded = key.strip().split("+", 2)
    raw = base64.b64decode(encoded)
    assert raw[0] == 1
    assert _h(name.encode() + b"\n" + raw)[:4].hex() == key_hash
    body, signatures = note.split("\n\n", 1)
    body += "\n"
    for line in signatures.splitlines():
        dash, signer, sig = line.split(" ")
        assert dash == "\u2014"
        blob = base64.b64decode(sig)
        if signer == name and blob[:4].hex() == key_hash:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], body.encode())
            origin, size, root = body.splitlines()[:3]
            assert origin == name
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature by the log's key")


# --- the service -------------------------------------------------------------------------------


@pytest.fixture
async def audit(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(
        kafka_bootstrap,
        [(name, topic.partitions) for topic in TOPICS for name in (topic.name, topic.dlq)],
    )
    port = free_port()
    async with fresh_database(pg_url, "auditsvc") as url:
        settings = Settings(
            kafka_bootstrap=kafka_bootstrap,
            database_url=url,
            port=port,
            var_dir=tmp_path,
            consumer_group_prefix=f"{uuid.uuid4().hex[:8]}-",
        )
        async with serving(create_app(settings), port) as client:
            yield client


async def _history(client: httpx.AsyncClient, subject: str) -> dict[str, Any]:
    response = await client.get(f"/v1/applications/{subject}/history", headers=AUDITOR)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _entries(client: httpx.AsyncClient, size: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < size:
        response = await client.get(
            "/v1/log/entries",
            params={"start": len(out), "end": min(size, len(out) + 1000)},
            headers=AUDITOR,
        )
        assert response.status_code == 200, response.text
        page = response.json()["entries"]
        assert page, "the log served no entries below its checkpoint's size"
        out.extend(page)
    return out


async def _tree_head(client: httpx.AsyncClient) -> tuple[str, int, bytes, str]:
    key = (await client.get("/v1/log/key", headers=AUDITOR)).text
    note = (await client.get("/v1/log/checkpoint", headers=AUDITOR)).text
    origin, size, root = outside_open_checkpoint(note, key)
    return origin, size, root, note


async def test_outside_verifier_agrees_with_the_served_log(
    audit: httpx.AsyncClient, kafka_bootstrap: str
) -> None:
    client = audit
    subject = f"APP-{uuid.uuid4().hex[:10]}"
    types = ["application.submitted", "eligibility.assessed", "review.task_assigned"]
    envelopes = [envelope(subject, message_type=t) for t in types]
    records: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = [
        (topic_for_type(e.type).name, catalog.encode(e), subject.encode(), e.headers())
        for e in envelopes
    ]
    # An undecodable record and a dead letter are records too, logged byte for byte.
    records.append(("applications.events", b"\xff\xfenot json", subject.encode(), []))
    records.append(
        (
            "applications.events.dlq",
            b"\x00garbage",
            subject.encode(),
            [("dlq.reason", b"undecodable"), ("dlq.error", b"not JSON")],
        )
    )
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        for topic, value, key, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)

        async def logged(count: int) -> bool:
            return len((await _history(client, subject))["records"]) >= count

        await eventually(lambda: logged(len(records)), timeout=30)
        _, first_size, first_root, _ = await _tree_head(client)

        # A republish of everything (same bytes) appends nothing; one new record appends one.
        for topic, value, key, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
        late = envelope(subject, message_type="application.withdrawn")
        await producer.send_and_wait(
            "applications.events",
            catalog.encode(late),
            key=subject.encode(),
            headers=late.headers(),
        )
        await eventually(lambda: logged(len(records) + 1), timeout=30)
    finally:
        await producer.stop()

    history = await _history(client, subject)
    assert len(history["records"]) == len(records) + 1
    leaves = [json.loads(base64.b64decode(r["leaf"])) for r in history["records"]]
    by_value = {
        base64.b64decode(leaf["value"]): item
        for leaf, item in zip(leaves, history["records"], strict=True)
    }
    assert set(by_value) == {v for _, v, _, _ in records} | {catalog.encode(late)}
    # One key and one partition per topic: a topic's records keep their order in the log.
    same_topic = [i["index"] for v, i in by_value.items() if i["topic"] == "applications.events"]
    assert same_topic == sorted(same_topic)
    assert [i["index"] for i in history["records"]] == sorted(i["index"] for i in by_value.values())
    submitted = by_value[records[0][1]]
    assert submitted["envelope"]["type"] == "application.submitted"
    assert submitted["envelope"]["actor"]["id"] == envelopes[0].actor.id
    assert by_value[records[1][1]]["envelope"]["rule_set_version"]
    assert by_value[records[3][1]]["envelope"]["decodable"] is False
    dead = by_value[records[4][1]]
    assert dead["topic"] == "applications.events.dlq"
    assert dead["envelope"]["dead_letter_reason"] == "undecodable"
    dead_leaf = json.loads(base64.b64decode(dead["leaf"]))
    assert dead_leaf["headers"] == [
        ["dlq.reason", base64.b64encode(b"undecodable").decode()],
        ["dlq.error", base64.b64encode(b"not JSON").decode()],
    ]

    origin, size, root, note = await _tree_head(client)
    assert origin == "incentives.example/audit"
    assert history["checkpoint"] == note
    assert history["tree_size"] == size
    entries = await _entries(client, size)
    assert [e["index"] for e in entries] == list(range(size))
    leaf_hashes = [_h(b"\x00" + base64.b64decode(e["leaf"])) for e in entries]
    assert len(set(leaf_hashes)) == size  # each distinct record once
    assert outside_mth(leaf_hashes) == root
    assert outside_mth(leaf_hashes[:first_size]) == first_root

    for item in history["records"]:
        proof = [base64.b64decode(p) for p in item["inclusion_proof"]]
        leaf = _h(b"\x00" + base64.b64decode(item["leaf"]))
        assert outside_inclusion_root(item["index"], size, leaf, proof) == root
    for index in sorted({0, size // 2, size - 1}):
        response = await client.get(
            "/v1/log/proof/inclusion", params={"index": index, "tree_size": size}, headers=AUDITOR
        )
        assert response.status_code == 200, response.text
        proof = [base64.b64decode(p) for p in response.json()["proof"]]
        assert outside_inclusion_root(index, size, leaf_hashes[index], proof) == root

    response = await client.get(
        "/v1/log/proof/consistency",
        params={"first": first_size, "second": size},
        headers=AUDITOR,
    )
    assert response.status_code == 200, response.text
    proof = [base64.b64decode(p) for p in response.json()["proof"]]
    assert size > first_size
    assert outside_consistency(first_size, size, proof, first_root) == (first_root, root)


async def test_api_refuses_what_it_cannot_answer(audit: httpx.AsyncClient) -> None:
    client = audit
    _, size, _, _ = await _tree_head(client)

    beyond = await client.get(
        "/v1/log/proof/inclusion", params={"index": 0, "tree_size": size + 1}, headers=AUDITOR
    )
    assert beyond.status_code == 422
    assert beyond.headers["content-type"] == "application/problem+json"
    assert "beyond the log" in beyond.json()["detail"]
    assert beyond.json()["errors"][0]["parameter"] == "tree_size"

    reversed_sizes = await client.get(
        "/v1/log/proof/consistency", params={"first": 3, "second": 2}, headers=AUDITOR
    )
    assert reversed_sizes.status_code == 422
    assert "larger than second" in reversed_sizes.json()["detail"]

    empty_range = await client.get(
        "/v1/log/entries", params={"start": 5, "end": 5}, headers=AUDITOR
    )
    assert empty_range.status_code == 422

    assert (await client.get("/v1/log/checkpoint")).status_code == 401
    for role in ("firm", "reviewer", "supervisor"):
        refused = await client.get("/v1/log/checkpoint", headers=auth(role))
        assert refused.status_code == 403, role
    assert (await client.get("/v1/log/checkpoint", headers=auth("admin"))).status_code == 200
    # Read only: no write method exists on any log path.
    for path in ("/v1/log/entries", "/v1/log/checkpoint", "/v1/applications/X/history"):
        assert (await client.post(path, headers=AUDITOR)).status_code == 405


async def test_out_of_range_parameters_are_validation_problems(audit: httpx.AsyncClient) -> None:
    for path, params in (
        ("/v1/log/entries", {"start": 2**63, "end": 2**63 + 1}),
        ("/v1/log/proof/inclusion", {"index": -1, "tree_size": 1}),
        ("/v1/log/proof/consistency", {"first": "x", "second": 2}),
    ):
        response = await audit.get(path, params=params, headers=AUDITOR)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"], path
