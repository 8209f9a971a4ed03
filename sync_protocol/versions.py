"""Protocol versions and their negotiation.

Policy (docs/protocol.md, "Versioning"): a server accepts its current and its previous major version;
a client announces the range it speaks and both sides use the highest version in common.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 1
OLDEST_SUPPORTED_VERSION = 1  # becomes PROTOCOL_VERSION - 1 once version 2 exists
PROTOCOL_HEADER = "FieldSync-Protocol"


@dataclass(frozen=True)
class VersionRange:
    oldest: int
    newest: int

    def __post_init__(self) -> None:
        if not 1 <= self.oldest <= self.newest:
            raise ValueError(f"invalid version range {self.oldest}..{self.newest}")


SUPPORTED = VersionRange(OLDEST_SUPPORTED_VERSION, PROTOCOL_VERSION)


class UnsupportedVersion(Exception):
    """No version in common; `client_too_old` says which side must be upgraded."""

    def __init__(self, client: VersionRange, server: VersionRange) -> None:
        self.client = client
        self.server = server
        self.client_too_old = client.newest < server.oldest
        if self.client_too_old:
            message = (
                f"This app speaks sync protocol {client.oldest}..{client.newest}; the server needs "
                f"{server.oldest}..{server.newest}. Update the app, then sync again."
            )
        else:
            message = (
                f"The server speaks sync protocol {server.oldest}..{server.newest}, older than this app's "
                f"{client.oldest}..{client.newest}. Ask the office to upgrade the server."
            )
        super().__init__(message)


def negotiate(client: VersionRange, server: VersionRange = SUPPORTED) -> int:
    """The highest version both sides speak; raises UnsupportedVersion when there is none."""
    newest_common = min(client.newest, server.newest)
    if newest_common < max(client.oldest, server.oldest):
        raise UnsupportedVersion(client, server)
    return newest_common
