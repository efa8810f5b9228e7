"""Checkpoints: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note`` envelopes, Ed25519.

A checkpoint note::

    incentives.example/audit
    42
    <standard base64 of the root hash>

    — incentives.example/audit <base64(4-byte key id || Ed25519 signature of the body)>

The body is the three lines (each ending in ``\\n``); a blank line; one signature line per signer,
the dash being U+2014. The key id is ``SHA-256(name || "\\n" || 0x01 || public key)[:4]`` and the
verifier key is published as ``<name>+<key id hex>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.audit.domain.merkle import HASH_SIZE

#: The signature algorithm byte of Ed25519 in signed notes.
ALG_ED25519 = 0x01
#: Starts every signature line (U+2014 EM DASH and a space).
SIGNATURE_PREFIX = "\u2014 "
#: Prefix of the private signer-key text (the signed-note ecosystem's own encoding).
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class CheckpointError(ValueError):
    """A note, key or checkpoint that is malformed or whose signature does not verify."""


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise CheckpointError(f"key name {name!r} must be non-empty, without spaces or '+'")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 key called ``name``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: which log (``origin``), how many leaves, and their Merkle Tree Hash."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError("the origin is one non-empty line")
        if self.size < 0:
            raise CheckpointError("a tree size is not negative")
        if len(self.root) != HASH_SIZE:
            raise CheckpointError(f"a root hash is {HASH_SIZE} bytes long")

    def body(self) -> str:
        """The note body: origin, size and base64 root, each line ending in ``\\n``."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        """Read a checkpoint body (extension lines after the third are allowed and ignored)."""
        if not body.endswith("\n"):
            raise CheckpointError("a checkpoint body ends with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3 or any(not line for line in lines):
            raise CheckpointError("a checkpoint body has origin, size and root lines")
        origin, size, root = lines[:3]
        if not _DECIMAL.fullmatch(size):
            raise CheckpointError(f"tree size {size!r} is not a decimal number")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except binascii.Error as exc:
            raise CheckpointError(f"root hash is not base64: {exc}") from exc
        return cls(origin=origin, size=int(size), root=root_hash)


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    key_id: bytes
    signature: bytes


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """A signed note's body and its signature lines (unverified)."""
    cut = note.find("\n\n")
    if cut < 0:
        raise CheckpointError("a signed note has a blank line between body and signatures")
    body, rest = note[: cut + 1], note[cut + 2 :]
    if not rest.endswith("\n"):
        raise CheckpointError("a signed note ends with a newline")
    signatures: list[NoteSignature] = []
    for line in rest[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise CheckpointError(f"not a signature line: {line!r}")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise CheckpointError(f"signature of {name!r} is not base64") from exc
        if not name or len(raw) < 5:
            raise CheckpointError(f"malformed signature line: {line!r}")
        signatures.append(NoteSignature(name=name, key_id=raw[:4], signature=raw[4:]))
    if not signatures:
        raise CheckpointError("a signed note has at least one signature")
    return body, signatures


class Verifier:
    """Checks notes signed by one Ed25519 key."""

    def __init__(self, name: str, public_key: bytes) -> None:
        _check_name(name)
        if len(public_key) != 32:
            raise CheckpointError("an Ed25519 public key is 32 bytes long")
        self.name = name
        self.public_key = public_key
        self.key_id = key_id(name, public_key)
        self._key = Ed25519PublicKey.from_public_bytes(public_key)

    @classmethod
    def from_key(cls, text: str) -> Verifier:
        """Read a verifier key ``<name>+<key id hex>+<base64(0x01 || key)>``."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a verifier key is <name>+<key id hex>+<base64 key>")
        name, hex_id, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise CheckpointError(f"malformed verifier key: {exc}") from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError("the verifier key is not an Ed25519 key")
        verifier = cls(name, raw[1:])
        if verifier.key_id != wanted or len(hex_id) != 8:
            raise CheckpointError("the verifier key's id does not match its name and key")
        return verifier

    def key_text(self) -> str:
        """The verifier key, ``<name>+<key id hex>+<base64(0x01 || key)>``."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def open(self, note: str) -> str:
        """The body of ``note`` if this key signed it; :class:`CheckpointError` otherwise."""
        body, signatures = split_note(note)
        for sig in signatures:
            if sig.name != self.name or sig.key_id != self.key_id:
                continue  # another signer's (a witness's): not ours to check
            try:
                self._key.verify(sig.signature, body.encode())
            except InvalidSignature:
                raise CheckpointError(f"the signature of {self.name} does not verify") from None
            return body
        raise CheckpointError(f"the note carries no signature of {self.name}+{self.key_id.hex()}")

    def open_checkpoint(self, note: str) -> Checkpoint:
        """The checkpoint of a note this key signed; its origin must be the key's name."""
        checkpoint = Checkpoint.parse_body(self.open(note))
        if checkpoint.origin != self.name:
            raise CheckpointError(
                f"checkpoint origin {checkpoint.origin!r} is not the log {self.name!r}"
            )
        return checkpoint


class Signer:
    """Signs checkpoints with one Ed25519 key, named after the log's origin."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = private_key
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = Verifier(name, public)

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """The key of a 32-byte Ed25519 seed."""
        if len(seed) != 32:
            raise CheckpointError("an Ed25519 seed is 32 bytes long")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_text(cls, text: str) -> Signer:
        """Read ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>``."""
        text = text.strip()
        if not text.startswith(PRIVATE_KEY_PREFIX):
            raise CheckpointError(f"a signer key starts with {PRIVATE_KEY_PREFIX}")
        parts = text[len(PRIVATE_KEY_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a signer key is PRIVATE+KEY+<name>+<key id hex>+<base64 seed>")
        name, hex_id, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise CheckpointError("the signer key is not base64") from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError("the signer key is not an Ed25519 key")
        signer = cls.from_seed(name, raw[1:])
        if signer.verifier.key_id.hex() != hex_id:
            raise CheckpointError("the signer key's id does not match its name and key")
        return signer

    def key_text(self) -> str:
        """The private signer key as text (keep it secret)."""
        seed = self._key.private_bytes_raw()
        encoded = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"{PRIVATE_KEY_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{encoded}"

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note of ``checkpoint``."""
        if checkpoint.origin != self.name:
            raise CheckpointError(f"this key signs for {self.name!r}, not {checkpoint.origin!r}")
        body = checkpoint.body()
        signature = self._key.sign(body.encode())
        encoded = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{body}\n{SIGNATURE_PREFIX}{self.name} {encoded}\n"

    def __repr__(self) -> str:  # never print the key
        return f"Signer({self.name!r}, key id {self.verifier.key_id.hex()})"
