"""Signed checkpoints (C2SP signed notes, Ed25519) and leaf bytes (RFC 8785)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from services.audit.domain.checkpoint import Checkpoint, CheckpointError, Signer, Verifier
from services.audit.domain.leaves import LeafFormatError, leaf_bytes, parse_leaf

ORIGIN = "incentives.example/audit"
SEED = bytes(range(32))


def test_checkpoint_note_format_is_exact() -> None:
    signer = Signer.from_seed(ORIGIN, SEED)
    root = hashlib.sha256(b"root").digest()
    note = signer.sign(Checkpoint(ORIGIN, 42, root))
    body, sig_line = note.split("\n\n")
    assert body + "\n" == f"{ORIGIN}\n42\n{base64.b64encode(root).decode()}\n"
    assert sig_line.startswith(f"\u2014 {ORIGIN} ")
    assert sig_line.endswith("\n")
    raw = base64.b64decode(sig_line.rstrip("\n").rsplit(" ", 1)[1])
    public = signer.verifier.public_key
    key_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + public).digest()[:4]
    assert raw[:4] == key_id
    assert len(raw) == 4 + 64
    assert signer.verifier.key_text() == (
        f"{ORIGIN}+{key_id.hex()}+" + base64.b64encode(b"\x01" + public).decode()
    )
    verifier = Verifier.from_key(signer.verifier.key_text())
    assert verifier.open_checkpoint(note) == Checkpoint(ORIGIN, 42, root)


def test_forged_or_foreign_notes_are_refused() -> None:
    signer = Signer.from_seed(ORIGIN, SEED)
    note = signer.sign(Checkpoint(ORIGIN, 7, bytes(32)))
    verifier = signer.verifier
    with pytest.raises(CheckpointError, match="does not verify"):
        verifier.open(note.replace("\n7\n", "\n8\n"))
    other = Signer.generate(ORIGIN)
    with pytest.raises(CheckpointError, match="no signature"):
        other.verifier.open(note)
    with pytest.raises(CheckpointError):
        verifier.open(note.replace("\u2014", "-"))
    with pytest.raises(CheckpointError, match="id does not match"):
        Verifier.from_key(verifier.key_text().replace(verifier.key_id.hex(), "00000000"))


def test_signer_key_text_round_trips_and_hides_in_repr() -> None:
    signer = Signer.from_seed(ORIGIN, SEED)
    again = Signer.from_text(signer.key_text())
    assert again.verifier.key_text() == signer.verifier.key_text()
    assert base64.b64encode(b"\x01" + SEED).decode() not in repr(signer)


def test_leaf_bytes_are_canonical_and_cover_everything() -> None:
    leaf = leaf_bytes("a.events", b"APP-1", [("z", b"1"), ("a", b"\x00")], b"\xff{")
    assert leaf == (
        b'{"headers":[["z","MQ=="],["a","AA=="]],"key":"QVBQLTE=","topic":"a.events",'
        b'"value":"/3s="}'
    )
    record = parse_leaf(leaf)
    assert (record.topic, record.key, record.headers, record.value) == (
        "a.events",
        b"APP-1",
        (("z", b"1"), ("a", b"\x00")),
        b"\xff{",
    )
    assert leaf_bytes("a.events", None, [], b"") == (
        b'{"headers":[],"key":null,"topic":"a.events","value":""}'
    )
    # Header order is part of the record.
    assert leaf != leaf_bytes("a.events", b"APP-1", [("a", b"\x00"), ("z", b"1")], b"\xff{")
    with pytest.raises(LeafFormatError, match="canonical"):
        parse_leaf(b'{"topic":"a","key":null,"headers":[],"value":""}')
