from __future__ import annotations

from django.urls import register_converter

from shardrouter.keyspace import KEYSPACE_END


class SnowflakeConverter:
    """A 64-bit row ID in a URL; anything larger than a bigint is no match (404), never a database error."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > KEYSPACE_END:
            raise ValueError("ID out of range")
        return number

    def to_url(self, value: int) -> str:
        return str(value)


# Registered once, on import, for the page and the API URLconfs alike.
register_converter(SnowflakeConverter, "snowflake")
