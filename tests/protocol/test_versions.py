"""Version negotiation: the highest version in common, or a clear "update the app / the server"."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import SUPPORTED, UnsupportedVersion, VersionRange, negotiate


@st.composite
def version_ranges(draw):
    oldest = draw(st.integers(1, 8))
    return VersionRange(oldest, draw(st.integers(oldest, 9)))


@pytest.mark.parametrize(
    ("client", "server", "agreed"),
    [
        ((1, 1), (1, 1), 1),
        ((1, 3), (2, 4), 3),
        ((2, 4), (1, 3), 3),
        ((1, 5), (3, 3), 3),
        ((3, 3), (1, 5), 3),
        ((2, 2), (2, 7), 2),
    ],
)
def test_negotiate_picks_the_highest_common_version(client, server, agreed):
    assert negotiate(VersionRange(*client), VersionRange(*server)) == agreed


@given(client=version_ranges(), server=version_ranges())
def test_negotiate_agrees_on_the_highest_version_both_speak_or_refuses(client, server):
    common = set(range(client.oldest, client.newest + 1)) & set(range(server.oldest, server.newest + 1))
    if common:
        assert negotiate(client, server) == max(common)
    else:
        with pytest.raises(UnsupportedVersion) as caught:
            negotiate(client, server)
        assert caught.value.client_too_old == (client.newest < server.oldest)


def test_negotiate_defaults_to_the_versions_this_library_supports():
    assert negotiate(SUPPORTED) == SUPPORTED.newest


def test_an_old_app_is_told_to_update_the_app():
    with pytest.raises(UnsupportedVersion) as caught:
        negotiate(VersionRange(1, 1), VersionRange(2, 3))
    error = caught.value
    assert error.client_too_old is True
    assert "Update the app" in str(error)
    assert "upgrade the server" not in str(error)
    assert (error.client, error.server) == (VersionRange(1, 1), VersionRange(2, 3))


def test_a_new_app_on_an_old_server_is_told_to_upgrade_the_server():
    with pytest.raises(UnsupportedVersion) as caught:
        negotiate(VersionRange(4, 5), VersionRange(2, 3))
    error = caught.value
    assert error.client_too_old is False
    assert "upgrade the server" in str(error)
    assert "Update the app" not in str(error)


@pytest.mark.parametrize(("oldest", "newest"), [(0, 1), (2, 1), (-1, 3)])
def test_version_range_rejects_empty_or_non_positive_ranges(oldest, newest):
    with pytest.raises(ValueError):
        VersionRange(oldest, newest)
