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


# -- export / import ---------------------------------------------------------------------------------------

_EXPORT_EPILOG = """\b
Examples:
  corral rules export refunds.rules --to cedar > refunds.cedar
  corral rules export refunds.rules --to cedar --schema > refunds.cedarschema
  corral rules export refunds.rules --to cedar --config agent.yaml --schema   every tool an action
  corral rules export refunds.rules --to cedar --json | jq '.untranslated'

\b
Each rule Cedar cannot express is named on stderr with the reason (calls() windows, budget,
time and day, labels and tags, case-insensitive MATCHES, shadow rules, REQUIRE PLAN), and listed
in a comment atop the policies; the rest decides in Cedar as in corral. The request the policies
expect: principal User::"NAME" (its roles are Role parents), action Action::"TOOL", resource
Agent::"AGENT", context {phase, effect, tool, args}; Deny is blocked, an Allow that a
@corral("approval") or @corral("flag") policy held needs approval or is flagged.

\b
Exit status:
  0  exported (with --strict: and every rule translated)
  1  --strict and a rule could not be translated
  2  a rules file is wrong (file:line:column) or a bad option
"""


@click.command("export", epilog=_EXPORT_EPILOG)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="FILE.rules...")
@click.option("--to", "target", type=click.Choice(["cedar"]), required=True, help="The language to write.")
@click.option("--schema", is_flag=True, help="Print the Cedar schema (entities, actions, context) instead.")
@click.option("--tools", multiple=True, metavar="NAME[,NAME...]", help="Tools to declare as actions in the schema.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False), help="An agent file: its tools are actions.")
@click.option("--json", "as_json", is_flag=True, help="Print {policies, schema, translated, untranslated} as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when a rule could not be translated.")
def export(files: tuple[str, ...], target: str, schema: bool, tools: tuple[str, ...], config: str | None,
           as_json: bool, strict: bool) -> None:
    """Translate rules FILES (one policy) to Cedar policies, or with --schema to a Cedar schema."""
    from corral.errors import RuleSyntaxError
    from corral.governance.rules import Policy
    from corral.governance.rules.cedar import export_cedar

    names = [name.strip() for option in tools for name in option.split(",") if name.strip()]
    if config:
        from corral.harness.config import AgentConfigError, known_tool_names, load_agent

        try:
            names.extend(known_tool_names(load_agent(config, check=False)))
        except AgentConfigError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        policy = Policy.from_sources([(_read(path), path) for path in files])
    except RuleSyntaxError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    result = export_cedar(policy, tools=names)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(result.schema if schema else result.policies, nl=False)
        for item in result.untranslated:
            click.echo(str(item), err=True)
    if strict and result.untranslated:
        sys.exit(1)


def _read(path: str) -> str:
    from corral.errors import RuleSyntaxError

    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise RuleSyntaxError(f"cannot read the file: {error}", source=path, line=1, column=1) from None


_IMPORT_EPILOG = """\b
Examples:
  corral rules import policies.cedar > policies.rules
  corral rules import policies.cedar && corral rules check policies.rules

\b
Reads permit/forbid with when/unless over principal (User, Role), action (Action::"TOOL"),
resource (Agent) and context.phase, .effect, .tool, .args; @corral("flag"|"approval") and
@reason("…") annotations as corral writes them. Anything else is an error naming file:line:column.

\b
Exit status:
  0  imported (the rules are printed)
  2  the file is not Cedar, or uses something corral's rules cannot say exactly (file:line:column)
"""


@click.command("import", epilog=_IMPORT_EPILOG)
@click.argument("file", type=click.Path(dir_okay=False), metavar="FILE.cedar")
def import_(file: str) -> None:
    """Translate the Cedar policies in FILE to corral rules (printed on stdout)."""
    from corral.governance.rules.cedar_import import CedarImportError, import_cedar

    try:
        with open(file, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        click.echo(f"error: {file}:1:1: cannot read the file: {error}", err=True)
        sys.exit(2)
    try:
        click.echo(import_cedar(text, file), nl=False)
    except CedarImportError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
