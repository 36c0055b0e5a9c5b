"""``corral rules test|export|import|replay``: the policy lifecycle at the command line (DESIGN §14).

Each command is a thin wrapper: the work is a plain function in ``corral.governance.rules`` (or
``corral.governance.replay``) that the server can call too; this module reads options, renders a
rich table for people or JSON for scripts, and turns located errors into exit codes.
Exit codes: 0 success, 1 a finding (a failing case, a flip with --fail-on-flip), 2 bad input (a rules
or tests file that is wrong — the message says where — or a bad option).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

_TEST_EPILOG = """\b
TESTS.yaml is a list of cases:
  - name: a big refund needs a human
    call: {tool: issue_refund, args: {amount: 250}, effect: reversible, phase: commit,
           principal: {name: alice, roles: [agent]}, budget: "80%", time: "10:00", day: tue,
           calls: {"send_*": 3}, labels: [pii]}
    expect: approval          # allowed | flagged | approval | blocked
    rule: refunds.rules:4     # optional: the deciding rule
    shadow: blocked           # optional: what the shadow rules would decide

\b
A case is decided by the rules alone (not by phases, plans or budget gates). Left out: effect
irreversible, phase explore, no principal, time 12:00, day tue, no budget.

\b
Examples:
  corral rules test refunds.rules refunds.tests.yaml
  corral rules test base.rules trial.rules cases.yaml --strict
  corral rules test refunds.rules refunds.tests.yaml --json | jq '.cases[] | select(.passed | not)'

\b
Exit status:
  0  every case passed
  1  a case failed (or, with --strict, a rule no case exercised)
  2  a rules or tests file is wrong (file:line:column, the case and the field are named)
"""


@click.command("test", epilog=_TEST_EPILOG)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="FILE.rules... TESTS.yaml")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@click.option("--strict", is_flag=True, help="Also fail when a rule is exercised by no case.")
def test(files: tuple[str, ...], as_json: bool, strict: bool) -> None:
    """Run the policy tests in TESTS.yaml against the rules files (checked together, as one policy).

    Prints pass/fail per case with the rule that decided, then the rules no case exercised.
    """
    from corral.errors import RuleSyntaxError
    from corral.governance.rules.casebook import CasebookError, run_casebook

    if len(files) < 2:
        raise click.UsageError("give one or more rules files, then the tests file: corral rules test A.rules T.yaml")
    try:
        report = run_casebook(list(files[:-1]), files[-1])
    except (RuleSyntaxError, CasebookError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        _render_casebook(report)
    if not report.ok or (strict and report.unexercised):
        sys.exit(1)


def _render_casebook(report: Any) -> None:
    from rich.table import Table

    console = _console()
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("")
    table.add_column("case", overflow="fold")
    table.add_column("expect")
    table.add_column("got")
    table.add_column("decided by", no_wrap=True)
    for result in report.results:
        mark = "[green]PASS[/]" if result.passed else "[red bold]FAIL[/]"
        got = result.got if result.shadow is None else f"{result.got} (shadow: {result.shadow})"
        table.add_row(mark, _escape(result.case.name), result.case.expect, got, _escape(", ".join(result.deciding)))
    console.print(table)
    failed = [result for result in report.results if not result.passed]
    if failed:
        console.print()
        for result in failed:
            where = f"{report.tests}:{result.case.line}"
            for problem in result.problems:
                console.print(f"[red]FAIL[/] {_escape(result.case.name)} ({_escape(where)}): {_escape(problem)}")
    if report.unexercised:
        console.print(f"\n[yellow]Rules no case exercised[/] ({len(report.unexercised)} of {report.total_rules}):")
        for source, text in report.unexercised:
            console.print(f"  {_escape(source)}  {_escape(text)}")
    style = "green" if report.ok else "red bold"
    console.print(f"\n[{style}]{_escape(report.summary())}[/]")


def _console() -> Any:
    """Rich for people: wide enough that a rule's text and source stay on one line when piped."""
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=200)
    return console


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
