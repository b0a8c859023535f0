"""Fixtures of the sweeper's tests: a throw-away PostgreSQL server for the session, a new database per test."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from tests.helpers.postgres_server import PostgresServer, find_bin_dir


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on 127.0.0.1 (pgserver's binaries, from the distributed extra), stopped and deleted at
    the end of the session. Skipped without PostgreSQL, except under CI, where it fails."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "no PostgreSQL server binaries: pip install -e '.[distributed]' (pgserver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bin_dir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, request):
    """The ``postgresql+psycopg://`` URL (with the role's password) of a new database for this test."""
    # Cut to PostgreSQL's 63 bytes; the digest keeps parametrized tests of one long name apart.
    digest = hashlib.sha1(request.node.name.encode()).hexdigest()[:8]
    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + f"_{digest}_{os.getpid()}"
    return postgres_server.create_database(name)
