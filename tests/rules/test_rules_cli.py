"""``corral rules check``: exit codes, output format, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from corral.cli import main


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_clean_file_exits_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.rules", "BLOCK send_email WHEN phase IS NOT commit\n")
    result = CliRunner().invoke(main, ["rules", "check", path])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "0 errors, 0 warnings" in result.stderr


def test_errors_exit_one_with_compiler_style_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.rules", "BLOCK a\nBLOCK send_email WHEN colour IS red\n")
    result = CliRunner().invoke(main, ["rules", "check", path])
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:2:23: error: ")
    assert 'unknown field "colour"' in lines[0]


def test_warnings_alone_exit_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "warn.rules", "BLOCK refund WHEN arg.amount ABOVE 100\n")
    result = CliRunner().invoke(main, ["rules", "check", path])
    assert result.exit_code == 0
    assert f"{path}:1:19: warning: arg.amount is used without" in result.stdout


def test_tools_option_reports_unknown_tools(tmp_path: Path) -> None:
    path = write(tmp_path, "t.rules", "BLOCK send_email\nBLOCK issue_refund\n")
    runner = CliRunner()
    assert runner.invoke(main, ["rules", "check", path, "--tools", "send_email,issue_refund"]).exit_code == 0
    result = runner.invoke(main, ["rules", "check", path, "--tools", "send_email", "--tools", "lookup"])
    assert result.exit_code == 1
    assert f'{path}:2:1: error: unknown tool "issue_refund"' in result.stdout


def test_several_files_are_checked_as_one_policy(tmp_path: Path) -> None:
    first = write(tmp_path, "a.rules", "TIMEZONE UTC\nALLOW send_email\n")
    second = write(tmp_path, "b.rules", "TIMEZONE Europe/Berlin\nBLOCK *\n")
    result = CliRunner().invoke(main, ["rules", "check", first, second])
    assert result.exit_code == 1
    assert f"{second}:1:1: error: TIMEZONE Europe/Berlin conflicts" in result.stdout
    assert f"{first}:2:1: warning: this ALLOW never takes effect" in result.stdout


def test_json_output(tmp_path: Path) -> None:
    path = write(tmp_path, "j.rules", "BLOCK x WHEN time ABOVE 23:59\n")
    result = CliRunner().invoke(main, ["rules", "check", "--json", path])
    assert result.exit_code == 1
    diagnostics = json.loads(result.stdout)
    assert diagnostics == [
        {
            "severity": "error",
            "source": path,
            "line": 1,
            "column": 1,
            "message": diagnostics[0]["message"],
        }
    ]
    assert "can never match" in diagnostics[0]["message"]
    clean = write(tmp_path, "c.rules", "ALLOW *\n")
    result = CliRunner().invoke(main, ["rules", "check", "--json", clean])
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_usage_errors_exit_two(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["rules", "check", str(tmp_path / "missing.rules")]).exit_code == 2
    assert runner.invoke(main, ["rules", "check"]).exit_code == 2
    assert runner.invoke(main, ["rules", "check", "--bogus"]).exit_code == 2


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.rules"
    path.write_bytes(b"BLOCK caf\xe9\n")
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 1
    assert "cannot read the file" in result.stdout


def test_help_texts_teach_with_examples() -> None:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    assert "rules" in top.output and "Examples:" in top.output
    check = runner.invoke(main, ["rules", "check", "--help"])
    assert check.exit_code == 0
    for words in ("--tools", "--json", "Exit status", "corral rules check refunds.rules"):
        assert words in check.output


def test_the_cli_imports_without_lark_or_rich() -> None:
    code = "import sys, corral.cli; print('lark' in sys.modules, 'rich' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


def test_check_with_an_agent_config_knows_its_tools(tmp_path):
    from click.testing import CliRunner

    from corral.cli import main

    (tmp_path / "tools.py").write_text("def lookup(order_id):\n    return order_id\n")
    (tmp_path / "agent.yaml").write_text(
        "name: a\ntools:\n  - {python: 'tools:lookup', effect: read}\n  - {builtin: files}\n")
    rules = tmp_path / "p.rules"
    rules.write_text("BLOCK lookup WHEN arg.order_id IS x\nBLOCK write_file WHEN phase IS explore\n"
                     "BLOCK lookpu WHEN phase IS commit\nBLOCK begin_commit WHEN budget ABOVE 90%\n")
    out = CliRunner().invoke(main, ["rules", "check", str(rules), "--config", str(tmp_path / "agent.yaml"), "--json"])
    assert out.exit_code == 1
    problems = json.loads(out.stdout)
    unknown = [p for p in problems if p["severity"] == "error"]
    assert len(unknown) == 1 and unknown[0]["line"] == 3 and "lookpu" in unknown[0]["message"]


def test_shadow_rules_are_noted_and_do_not_fail_the_check(tmp_path: Path) -> None:
    path = write(tmp_path, "trial.rules", "MODE SHADOW\nBLOCK send_* WHEN arg.to EXISTS AND arg.to MATCHES \"*@x\"\n")
    result = CliRunner().invoke(main, ["rules", "check", path])
    assert result.exit_code == 0
    assert result.stdout.strip() == (
        f"{path}:1:1: note: MODE SHADOW: 1 shadow rule (lines 2) evaluated and traced, never enforced"
    )
    assert "0 errors, 0 warnings" in result.stderr
    result = CliRunner().invoke(main, ["rules", "check", "--json", path])
    assert [d["severity"] for d in json.loads(result.stdout)] == ["note"]
