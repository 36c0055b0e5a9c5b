"""Principals and tokens: 32 random bytes shown once, only the SHA-256 stored, names compared normalised,
revocation seen at once; and ``corral principals`` on the command line."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from corral.server.identity import (
    AuthenticationError,
    IdentityError,
    Principal,
    add_principal,
    authenticate,
    list_principals,
    normalise_name,
    revoke_principal,
    token_digest,
)
from corral.store.memory import MemoryStore
from tests.server.serving import CORRAL


def test_a_token_is_32_random_bytes_and_only_its_digest_is_stored() -> None:
    store = MemoryStore()
    principal, token = add_principal(store, "alice", ["user", "approver"])
    assert principal == Principal("alice", ("user", "approver"))
    raw = token.removeprefix("corral_")
    assert len(raw) == 43  # base64url of 32 bytes, unpadded
    _, other = add_principal(store, "bob", ["user"])
    assert other != token
    record = store.get_principal("alice")
    assert record["token_sha256"] == hashlib.sha256(token.encode()).hexdigest() == token_digest(token)
    assert token not in json.dumps(store.list_principals())
    assert authenticate(store, token) == principal


@pytest.mark.parametrize("given", ["Alice", " alice", "ALICE", "al\u200bice", "ａｌｉｃｅ"])
def test_names_are_one_principal_however_they_are_spelled(given: str) -> None:
    store = MemoryStore()
    add_principal(store, "alice", ["user"])
    assert normalise_name(given.replace("\u200b", "")) == "alice"
    with pytest.raises(IdentityError):
        add_principal(store, given, ["user"])
    assert Principal("alice", ("user",)).owns(given.replace("\u200b", ""))


def test_bad_names_and_roles_are_refused_and_nothing_is_stored() -> None:
    store = MemoryStore()
    for name in ("", "   ", "a\nb", "x" * 101, "\u200b"):
        with pytest.raises(IdentityError):
            add_principal(store, name, ["user"])
    with pytest.raises(IdentityError, match="unknown role 'root'"):
        add_principal(store, "carol", ["root"])
    with pytest.raises(IdentityError, match="at least one role"):
        add_principal(store, "carol", [])
    assert store.list_principals() == []


def test_unknown_malformed_and_revoked_tokens_do_not_authenticate() -> None:
    store = MemoryStore()
    _, token = add_principal(store, "alice", ["user"])
    for bad, why in ((None, "no API token"), ("", "no API token"), ("abc", "malformed"),
                     ("corral_" + "x" * 43, "not valid"), (token + "x", "not valid")):
        with pytest.raises(AuthenticationError, match=why):
            authenticate(store, bad)
    revoked = revoke_principal(store, "ALICE")
    assert revoked["name"] == "alice" and revoked["revoked"]
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(store, token)
    assert revoke_principal(store, "alice")["revoked"] == revoked["revoked"]  # revoking again changes nothing
    with pytest.raises(IdentityError, match="no principal named 'zed'"):
        revoke_principal(store, "zed")
    assert list_principals(store) == [{"name": "alice", "roles": ["user"], "created": revoked and
                                       store.get_principal("alice")["created"], "revoked": revoked["revoked"]}]


def test_roles_say_who_reads_and_who_acts() -> None:
    user, auditor, admin = Principal("u", ("user",)), Principal("a", ("auditor",)), Principal("d", ("admin",))
    assert user.sees("u") and not user.sees("someone") and not user.sees(None)
    assert auditor.sees("someone") and not auditor.has("user") and not auditor.has("approver")
    assert admin.sees("someone") and admin.has("user") and admin.has("approver") and admin.reads_all


def test_the_cli_prints_the_token_once_alone_on_the_first_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/corral.db"
    added = subprocess.run([CORRAL, "principals", "add", "alice", "--role", "user", "--role", "approver",
                            "--store", url], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    lines = added.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral_") and len(lines[0]) == 50
    assert "shown this once" in added.stderr
    as_json = subprocess.run([CORRAL, "principals", "add", "bob", "--role", "auditor", "--store", url, "--json"],
                             capture_output=True, text=True, timeout=60)
    answer = json.loads(as_json.stdout)
    assert set(answer) == {"name", "roles", "token"} and answer["roles"] == ["auditor"]
    twice = subprocess.run([CORRAL, "principals", "add", "Alice", "--role", "user", "--store", url],
                           capture_output=True, text=True, timeout=60)
    assert twice.returncode == 1 and "exists already" in twice.stderr and twice.stdout == ""
    bad = subprocess.run([CORRAL, "principals", "add", "carol", "--role", "root", "--store", url],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "root" in bad.stderr
    listed = json.loads(subprocess.run([CORRAL, "principals", "list", "--store", url, "--json"],
                                       capture_output=True, text=True, timeout=60).stdout)
    assert [(p["name"], p["roles"], p["revoked"]) for p in listed] == [("alice", ["user", "approver"], None),
                                                                       ("bob", ["auditor"], None)]
    assert lines[0] not in json.dumps(listed)
    revoked = subprocess.run([CORRAL, "principals", "revoke", "nobody", "--store", url], capture_output=True,
                             text=True, timeout=60)
    assert revoked.returncode == 1 and "no principal named 'nobody'" in revoked.stderr
