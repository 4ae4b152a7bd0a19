r"""Published messages: a content-addressed store of everything a SecCL run anchors.

The chain holds only digests; the store holds the messages they commit to, so anyone
can fetch a message by the digest the chain anchors and re-verify it (see
:mod:`seccl_flwr.audit`). A message's address is its EIP-712 digest, which binds the
chain id, contract, run id, round, kind, author and payload
(:mod:`seccl_flwr.protocol.eip712`); for a ballot it is the ``Ballot`` digest the
contract records in ``BallotCast`` and ``anchorOf(round, BALLOT, evaluator)``.

:class:`DirectoryStore` keeps one file per message in a directory (the run
directory), named by the 0x-prefixed hex digest. Any object with the methods of
:class:`MessageStore` can replace it (e.g. a store shared by several runs).

A stored file is::

    b"SECCL-MSG\x01" | u32 len(header) | header | payload

``header`` is UTF-8 JSON with sorted keys: ``chain_id``, ``contract``, ``run_id``,
``round``, ``kind`` (``update``, ``ballot``, ``global_model`` or ``evaluation``),
``author`` (the evaluator of a ballot), ``signature`` (0x hex; empty for global
models, which are authenticated by the owner's anchoring transaction) and, for
ballots, ``peers`` and ``scores``. ``payload`` is the canonical encoding of the
message's arrays (:mod:`seccl_flwr.protocol.encoding`; no arrays for a ballot). All
integers are little-endian.
"""

import json
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import ConfigurationError, EncodingError, SecCLError
from .protocol.eip712 import Kind, RunBinding
from .protocol.encoding import decode_arrays, encode_arrays
from .protocol.signed import SignedMessage

MAGIC = b"SECCL-MSG\x01"
_DIGEST_NAME = re.compile(r"^0x[0-9a-f]{64}$")
_KIND_NAMES = {kind: kind.name.lower() for kind in Kind}


class StoreError(SecCLError, RuntimeError):
    """Base class of message store errors."""


class MessageNotFoundError(StoreError, KeyError):
    """No message is stored under the digest."""


class StoreConflictError(StoreError):
    """Another content is already stored under the digest."""


class StoredMessageFormatError(StoreError, ValueError):
    """A stored message cannot be decoded (bad magic, header or payload)."""


def encode_message(message: SignedMessage) -> bytes:
    """Return the stored form of ``message`` (see the module docstring)."""
    header = {
        "chain_id": message.binding.chain_id,
        "contract": message.binding.contract,
        "run_id": "0x" + message.binding.run_id.hex(),
        "round": message.round,
        "kind": _KIND_NAMES[message.kind],
        "author": message.author,
        "signature": "0x" + message.signature.hex(),
    }
    if message.kind == Kind.BALLOT:
        header["peers"] = list(message.peers)
        header["scores"] = list(message.scores)
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(raw)) + raw + encode_arrays(message.payload)


def decode_message(data: bytes) -> SignedMessage:
    """Decode a stored message, strictly.

    Only the canonical form :func:`encode_message` writes is accepted, so one message
    has exactly one stored form.

    Raises
    ------
    StoredMessageFormatError
        If the bytes are not a well-formed stored message in canonical form.
    """
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise StoredMessageFormatError("not a SecCL stored message (bad magic bytes)")
    start = len(MAGIC) + 4
    (size,) = struct.unpack("<I", data[len(MAGIC) : start])
    if start + size > len(data):
        raise StoredMessageFormatError(f"header of {size} bytes is truncated")
    try:
        header = json.loads(data[start : start + size].decode())
        kinds = [k for k, name in _KIND_NAMES.items() if name == header["kind"]]
        if not kinds:
            raise ValueError(f"unknown message kind {header['kind']!r}")
        message = SignedMessage(
            binding=RunBinding(
                chain_id=int(header["chain_id"]),
                contract=str(header["contract"]),
                run_id=_hex_bytes(header["run_id"]),
            ),
            round=int(header["round"]),
            kind=kinds[0],
            author=str(header["author"]),
            payload=decode_arrays(data[start + size :]),
            signature=_hex_bytes(header["signature"]),
            peers=tuple(header.get("peers", ())),
            scores=tuple(header.get("scores", ())),
        )
    except EncodingError as exc:
        raise StoredMessageFormatError(f"bad stored payload: {exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoredMessageFormatError(f"bad stored message header: {exc!r}") from exc
    if encode_message(message) != data:
        raise StoredMessageFormatError(
            "stored message is not in canonical form (re-encoding it gives other bytes)"
        )
    return message


def _hex_bytes(text: str) -> bytes:
    if not isinstance(text, str) or not text.startswith("0x"):
        raise ValueError(f"expected 0x-prefixed hex, got {text!r}")
    return bytes.fromhex(text[2:])


def digest_hex(digest: bytes) -> str:
    """Return a digest as its 0x-prefixed lower-case hex name."""
    return "0x" + bytes(digest).hex()


def parse_digest(name: str) -> bytes:
    """Return the 32 bytes of a ``0x``-prefixed hex digest.

    Raises
    ------
    ConfigurationError
        If ``name`` is not 0x followed by 64 hex digits.
    """
    if not _DIGEST_NAME.match(name.lower()):
        raise ConfigurationError(f"not a 0x-prefixed 32-byte hex digest: {name!r}")
    return bytes.fromhex(name[2:])


@runtime_checkable
class MessageStore(Protocol):
    """What SecCL needs of a message store: content-addressed put/get by digest."""

    def put(self, message: SignedMessage) -> bytes:
        """Store ``message`` under its digest (idempotent); return the digest."""
        ...

    def get(self, digest: bytes) -> SignedMessage:
        """Return the message stored under ``digest`` (``MessageNotFoundError`` if none)."""
        ...

    def has(self, digest: bytes) -> bool:
        """Return whether a message is stored under ``digest``."""
        ...

    def digests(self) -> Iterator[bytes]:
        """Yield the digests of all stored messages."""
        ...


class DirectoryStore:
    """A message store in one directory: one file per message, named by its digest.

    Writes are atomic (a temporary file in the same directory, then ``os.replace``)
    and idempotent: storing the same message twice is a no-op, storing a different
    content under an existing digest raises :class:`StoreConflictError`. Other files
    in the directory are ignored.

    Parameters
    ----------
    path : str | os.PathLike
        The directory; created if missing.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"message store {self.path} is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.path)!r})"

    def file_of(self, digest: bytes) -> Path:
        """Return the path of the file that holds (or would hold) ``digest``."""
        if len(digest) != 32:
            raise ConfigurationError(f"a digest has 32 bytes, got {len(digest)}")
        return self.path / digest_hex(digest)

    def put(self, message: SignedMessage) -> bytes:
        """Store ``message`` under its digest; return the digest.

        Raises
        ------
        StoreConflictError
            If a different content is already stored under the same digest.
        """
        digest = message.digest()
        data = encode_message(message)
        target = self.file_of(digest)
        if target.exists():
            if target.read_bytes() != data:
                raise StoreConflictError(
                    f"{target} already holds a different message with digest {digest_hex(digest)}"
                )
            return digest
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: bytes) -> SignedMessage:
        """Return the message stored under ``digest``, as stored (not re-verified).

        Raises
        ------
        MessageNotFoundError
            If nothing is stored under ``digest``.
        StoredMessageFormatError
            If the file cannot be decoded.
        """
        target = self.file_of(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise MessageNotFoundError(f"no message {digest_hex(digest)} in {self.path}") from None
        try:
            return decode_message(data)
        except StoredMessageFormatError as exc:
            raise StoredMessageFormatError(f"{target}: {exc}") from exc

    def has(self, digest: bytes) -> bool:
        """Return whether a message is stored under ``digest``."""
        return self.file_of(digest).is_file()

    def digests(self) -> Iterator[bytes]:
        """Yield the digests of all stored messages, in name order."""
        for entry in sorted(self.path.iterdir()):
            if entry.is_file() and _DIGEST_NAME.match(entry.name):
                yield bytes.fromhex(entry.name[2:])


def open_store(store: MessageStore | str | os.PathLike | None) -> MessageStore | None:
    """Return ``store`` as a :class:`MessageStore`: a path becomes a :class:`DirectoryStore`.

    Raises
    ------
    TypeError
        If ``store`` is neither a path nor an object with the store methods.
    """
    if store is None or isinstance(store, MessageStore):
        return store
    if isinstance(store, str | os.PathLike):
        return DirectoryStore(store)
    raise TypeError(
        f"store must be a MessageStore, a directory path or None, got {type(store).__name__}"
    )
