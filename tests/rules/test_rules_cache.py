"""The compiled-policy cache of per-call processes: parsed once, re-parsed when the text changes, and
nothing but rule nodes is ever loaded from it."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from corral.governance.rules import Policy
from corral.governance.rules.cache import cached_policy

TEXT = 'BLOCK send_* WHEN arg.to MATCHES "*@evil.test"\nREQUIRE APPROVAL FOR pay WHEN arg.amount ABOVE 100\n'


def test_the_cached_policy_decides_as_the_parsed_one(tmp_path: Path) -> None:
    first = cached_policy([(TEXT, "p.rules")], tmp_path)
    [entry] = list(tmp_path.iterdir())
    again = cached_policy([(TEXT, "p.rules")], tmp_path)
    parsed = Policy.from_sources([(TEXT, "p.rules")])
    assert first.sha256 == again.sha256 == parsed.sha256
    assert [r.source for r in again.rules] == ["p.rules:1", "p.rules:2"]
    assert list(tmp_path.iterdir()) == [entry]


def test_changed_text_is_parsed_again_and_a_syntax_error_still_surfaces(tmp_path: Path) -> None:
    cached_policy([(TEXT, "p.rules")], tmp_path)
    changed = cached_policy([(TEXT + "FLAG * WHEN time OUTSIDE 09:00-17:00\n", "p.rules")], tmp_path)
    assert len(changed.rules) == 3 and len(list(tmp_path.iterdir())) == 2
    from corral import RuleSyntaxError

    with pytest.raises(RuleSyntaxError, match=r"p\.rules:1"):
        cached_policy([("BLOCK x WHEN phase IS comit\n", "p.rules")], tmp_path)


def test_a_poisoned_entry_is_never_loaded_and_the_text_is_parsed_instead(tmp_path: Path) -> None:
    cached_policy([(TEXT, "p.rules")], tmp_path)
    [entry] = list(tmp_path.iterdir())
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # would run a command if anything unpickled it
            return (subprocess.call, (["touch", str(marker)],))

    planted = [
        pickle.dumps(Evil()),  # an entry of the pickle era: never unpickled
        b"not json",
        b'{"@": "Popen", "v": [["touch", "x"]]}',  # a class that is not a rule node
        b'{"@": "Rule", "v": ["block"]}',  # a node with the wrong fields
        b'{"@": "Literal", "v": ["x", true, 1, 1]}',  # a node, but not a rule file
        b"[1, 2, 3]",
    ]
    for bad in planted:
        entry.write_bytes(bad)
        policy = cached_policy([(TEXT, "p.rules")], tmp_path)
        assert not marker.exists() and len(policy.rules) == 2
        assert policy.sha256 == Policy.from_sources([(TEXT, "p.rules")]).sha256
        assert entry.read_bytes() != bad  # replaced by the parsed text's entry


def test_an_entry_holds_every_node_kind_and_round_trips(tmp_path: Path) -> None:
    from corral.governance.rules.cache import decode, encode
    from corral.governance.rules.parser import parse_rules

    text = (
        "TIMEZONE Europe/Berlin\nDEFAULT BLOCK\nREQUIRE PLAN\n"
        'ALLOW pay WHEN arg.amount AT MOST $100.50 AND NOT (principal.role IN (intern, guest) OR day IN (sat, sun))\n'
        'BLOCK send_* WHEN arg.to MATCHES "*@evil.test" UNLESS time INSIDE 09:00-17:00 BECAUSE "after hours"\n'
        "FLAG * WHEN calls(send_*, 1h) ABOVE 3 AND arg.customer.tier IS gold\n"
        "SHADOW BLOCK * WHEN budget ABOVE 90%\n"
    )
    parsed = parse_rules(text, "all.rules", mode="shadow")
    back = decode(__import__("json").dumps(encode(parsed)))
    assert back == parsed
    assert Policy([back]).sha256 == Policy([parsed]).sha256


def test_a_process_with_a_cached_policy_never_loads_the_parser(tmp_path: Path) -> None:
    cached_policy([(TEXT, "p.rules")], tmp_path)
    code = (
        "import sys\n"
        "from corral.governance.rules.cache import cached_policy\n"
        f"policy = cached_policy([({TEXT!r}, 'p.rules')], __import__('pathlib').Path({str(tmp_path)!r}))\n"
        "assert len(policy.rules) == 2\n"
        "print(sorted(m for m in sys.modules if m.startswith('lark') or m.endswith('rules.parser')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
