"""A reader for PostgreSQL's ``pgoutput`` logical decoding messages (protocol version 1).

Change capture reads each source database's WAL through the SQL function
``pg_logical_slot_peek_binary_changes`` with the ``pgoutput`` plugin: one
binary message per row. This module turns those bytes into plain values and
groups them into committed transactions. It knows nothing about the warehouse.

Columns arrive in text form; ``None`` is SQL NULL and ``UNCHANGED`` is a
TOASTed value an update did not touch (PostgreSQL does not log it again).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()
Value = str | None | _Unchanged


@dataclass(frozen=True)
class Relation:
    relid: int
    schema: str
    name: str
    columns: tuple[str, ...]
    type_oids: tuple[int, ...]


@dataclass(frozen=True)
class Change:
    """One row change: ``op`` is ``insert``, ``update`` or ``delete``; ``row`` maps column to text value.

    For a delete, ``row`` holds only the replica identity's columns.
    """

    op: str
    table: str
    row: dict[str, Value]


@dataclass
class Transaction:
    xid: int
    commit_time: datetime
    end_lsn: int = 0
    changes: list[Change] = field(default_factory=list)
    messages: list[tuple[str, bytes]] = field(default_factory=list)  # (prefix, content), transactional only
    truncated: list[str] = field(default_factory=list)
    relations: dict[str, Relation] = field(default_factory=dict)  # tables as described in this transaction


class ProtocolError(ValueError):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> str:
        value = self.data[self.pos : self.pos + 1].decode()
        self.pos += 1
        return value

    def int8(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def int16(self) -> int:
        (value,) = struct.unpack_from(">h", self.data, self.pos)
        self.pos += 2
        return int(value)

    def int32(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return int(value)

    def uint32(self) -> int:
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def int64(self) -> int:
        (value,) = struct.unpack_from(">q", self.data, self.pos)
        self.pos += 8
        return int(value)

    def string(self) -> str:
        end = self.data.index(b"\0", self.pos)
        value = self.data[self.pos : end].decode()
        self.pos = end + 1
        return value

    def raw(self, n: int) -> bytes:
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return value

    def tuple_data(self) -> list[Value]:
        values: list[Value] = []
        for _ in range(self.int16()):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind == "t":
                values.append(self.raw(self.int32()).decode())
            else:
                raise ProtocolError(f"unexpected tuple value kind {kind!r} (binary mode is not used)")
        return values


def timestamp(microseconds: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=microseconds)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class Decoder:
    """Feeds messages in order; yields each transaction when its commit arrives.

    Relation descriptions persist across transactions of one decoding call
    (pgoutput sends each once per call, before its first change).
    """

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self.current: Transaction | None = None

    def feed(self, data: bytes) -> Transaction | None:
        reader = _Reader(data)
        kind = reader.byte()
        if kind == "B":
            reader.int64()  # final LSN
            commit_time = timestamp(reader.int64())
            self.current = Transaction(xid=reader.uint32(), commit_time=commit_time)
            return None
        txn = self.current
        if kind == "R":
            relid = reader.uint32()
            schema, name = reader.string(), reader.string()
            reader.int8()  # replica identity
            columns, oids = [], []
            for _ in range(reader.int16()):
                reader.int8()  # flags (part of the key)
                columns.append(reader.string())
                oids.append(reader.uint32())
                reader.int32()  # type modifier
            relation = Relation(relid, schema, name, tuple(columns), tuple(oids))
            self.relations[relid] = relation
            if txn is not None:
                txn.relations[name] = relation
            return None
        if kind == "Y" or kind == "O":
            return None  # types are not needed (text values); origins never arrive with origin = none
        if txn is None:
            if kind == "M":
                return None  # a non-transactional message outside any transaction
            raise ProtocolError(f"message {kind!r} outside a transaction")
        if kind in "IUD":
            relation = self._relation(reader.uint32())
            txn.relations.setdefault(relation.name, relation)
            marker = reader.byte()
            if kind == "I":
                txn.changes.append(
                    Change("insert", relation.name, dict(zip(relation.columns, reader.tuple_data(), strict=False)))
                )
            elif kind == "U":
                if marker in "KO":  # the old key or row, then the new row
                    reader.tuple_data()
                    marker = reader.byte()
                txn.changes.append(
                    Change("update", relation.name, dict(zip(relation.columns, reader.tuple_data(), strict=False)))
                )
            else:
                values = dict(zip(relation.columns, reader.tuple_data(), strict=False))
                txn.changes.append(Change("delete", relation.name, {k: v for k, v in values.items() if v is not None}))
        elif kind == "T":
            count = reader.int32()
            reader.int8()
            txn.truncated.extend(self._relation(reader.uint32()).name for _ in range(count))
        elif kind == "M":
            transactional = reader.int8() & 1
            reader.int64()
            prefix = reader.string()
            content = reader.raw(reader.int32())
            if transactional:
                txn.messages.append((prefix, content))
        elif kind == "C":
            reader.int8()
            reader.int64()  # commit LSN
            txn.end_lsn = reader.int64()
            self.current = None
            return txn
        else:
            raise ProtocolError(f"unknown pgoutput message {kind!r}")
        return None

    def _relation(self, relid: int) -> Relation:
        try:
            return self.relations[relid]
        except KeyError:
            raise ProtocolError(f"change for relation {relid} before its description") from None
