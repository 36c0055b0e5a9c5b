"""``corral rules check|test|export|import|replay``: the policy lifecycle at the command line (DESIGN §14).

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

# -- corral rules: the group, and check ------------------------------------------------------------

_RULES_EPILOG = """\b
A rules file has one rule per line:
  TIMEZONE Europe/Berlin
  DEFAULT ALLOW
  BLOCK send_email WHEN phase IS NOT commit
  REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"
  FLAG * WHEN time OUTSIDE 09:00-17:00     # comments start with #
"""


@click.group(epilog=_RULES_EPILOG)
def rules() -> None:
    """Check, test, translate and replay *.rules policy files (BLOCK, ALLOW, FLAG, REQUIRE APPROVAL)."""


_CHECK_EPILOG = """\b
Examples:
  corral rules check refunds.rules
  corral rules check refunds.rules mail.rules --tools issue_refund,send_email,lookup_order
  corral rules check refunds.rules --config agent.yaml      the agent file's tools are the known ones
  corral rules check refunds.rules --json | jq '.[] | select(.severity == "error")'

\b
Output, one line per finding:
  refunds.rules:4:1: error: this rule can never match: ...
  refunds.rules:7:30: warning: arg.note is used without "arg.note EXISTS": ...
  trial.rules:1:1: note: MODE SHADOW: 2 shadow rules (lines 2, 3) evaluated and traced, never enforced

\b
Exit status:
  0  no errors (warnings and notes alone still pass)
  1  at least one error
  2  usage error (a file that does not exist, a bad option)
"""


@rules.command("check", epilog=_CHECK_EPILOG)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--tools",
    "tools",
    multiple=True,
    metavar="NAME[,NAME...]",
    help="Tool names the agent registers; rules aimed at any other tool are reported. "
    "Comma-separated, may be repeated.",
)
@click.option(
    "--config",
    "config",
    type=click.Path(exists=True, dir_okay=False),
    help="An agent file: its tools (Python, built-ins, MCP effects, the phase tools) are the known tools.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the diagnostics as a JSON list.")
def check(files: tuple[str, ...], tools: tuple[str, ...], config: str | None, as_json: bool) -> None:
    """Check rules FILES the way the governor will load them, and more.

    Reports syntax errors (with line and column), rules aimed at unknown tools (with --tools), rules
    that can never match, ALLOW rules that a BLOCK always overrides, and optional arguments used
    without EXISTS (a missing argument makes a condition indeterminate: BLOCK and REQUIRE APPROVAL
    then fail closed, ALLOW and FLAG do not match). The files are checked together, as one policy.
    Shadow rules (SHADOW before a rule, MODE SHADOW atop a file) are listed in a note: they are
    evaluated and traced, never enforced; a shadow BLOCK does not override an enforced ALLOW.
    """
    import json

    from corral.governance.rules.lint import ERROR, WARNING, Diagnostic, lint_sources

    known = None
    if tools:
        known = [name.strip() for option in tools for name in option.split(",") if name.strip()]
    if config:
        from corral.harness.config import AgentConfigError, known_tool_names, load_agent

        try:
            known = [*(known or []), *known_tool_names(load_agent(config, check=False))]
        except AgentConfigError as exc:
            raise click.UsageError(str(exc)) from None

    sources: list[tuple[str, str]] = []
    diagnostics: list[Diagnostic] = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                sources.append((handle.read(), path))
        except (OSError, UnicodeDecodeError) as error:
            diagnostics.append(Diagnostic(ERROR, path, 1, 1, f"cannot read the file: {error}"))
    diagnostics.extend(lint_sources(sources, known))

    if as_json:
        click.echo(json.dumps([d.to_dict() for d in diagnostics], indent=2))
    else:
        for diagnostic in diagnostics:
            colour = {ERROR: "red", WARNING: "yellow"}.get(diagnostic.severity, "cyan")
            location = f"{diagnostic.source}:{diagnostic.line}:{diagnostic.column}:"
            severity = click.style(f"{diagnostic.severity}:", fg=colour, bold=True)
            click.echo(f"{location} {severity} {diagnostic.message}")
        errors = sum(d.severity == ERROR for d in diagnostics)
        warnings = sum(d.severity == WARNING for d in diagnostics)
        summary = f"{len(files)} file{'s' if len(files) != 1 else ''} checked: "
        summary += f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"
        click.echo(summary, err=True)
    if any(d.severity == ERROR for d in diagnostics):
        raise SystemExit(1)



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


@rules.command("test", epilog=_TEST_EPILOG)
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


@rules.command("export", epilog=_EXPORT_EPILOG)
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


@rules.command("import", epilog=_IMPORT_EPILOG)
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


# -- replay ------------------------------------------------------------------------------------------------

_REPLAY_EPILOG = """\b
Examples:
  corral rules replay new.rules --agent agent.yaml                 what would flip, as a table
  corral rules replay new.rules --agent agent.yaml --since 7d      the last week's calls only
  corral rules replay new.rules --agent agent.yaml --session 01J…  one session
  corral rules replay new.rules --agent agent.yaml --json | jq '.changes'
  corral rules replay new.rules --agent agent.yaml --fail-on-flip  in CI: exit 1 if any call flips

\b
Every stored call is re-decided on the rule inputs its trace recorded; only the rules change (a
call refused for its phase, its budget or a fault stays refused). --json prints one object:
{"replayed", "skipped", "changes": {"allowed->blocked": n, …}, "flips": [{"trace", "session",
"tool", "old", "new", "rule"}]}; why calls were skipped (traces written before inputs were
recorded, corrupt rows) goes to stderr. Decisions: allowed, flagged, approval, blocked.

\b
Exit status:
  0  replayed (with --fail-on-flip: and nothing would flip)
  1  --fail-on-flip and a call would flip
  2  a rules file or the agent file is wrong, a bad --since, or the store cannot be read
"""


@rules.command("replay", epilog=_REPLAY_EPILOG)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="NEW.rules...")
@click.option("--agent", "agent_file", type=click.Path(dir_okay=False), metavar="AGENT.yaml",
              help="The agent whose calls to replay; its store: unless --store.")
@click.option("--store", "store_url", metavar="URL", help="The store to read (default: the agent file's).")
@click.option("--since", metavar="WHEN", help="Only calls decided since: 7d, 12h, 30m, 2w or a date.")
@click.option("--session", "session_id", metavar="ID", help="Only this session's calls.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (see below).")
@click.option("--fail-on-flip", is_flag=True, help="Exit 1 if any call would be decided differently.")
@click.option("--limit", default=50, show_default=True, help="Flips listed in the table (--json lists all).")
def replay(files: tuple[str, ...], agent_file: str | None, store_url: str | None, since: str | None,
           session_id: str | None, as_json: bool, fail_on_flip: bool, limit: int) -> None:
    """Re-decide the stored calls under NEW.rules and show every call that would flip."""
    from corral.errors import GovernanceError, RuleSyntaxError
    from corral.governance.rules import Policy
    from corral.governance.rules.replay import parse_since
    from corral.governance.rules.replay import replay as run_replay
    from corral.store import open_store

    agent = None
    if agent_file is not None:
        from corral.harness.config import load_agent

        try:
            config = load_agent(agent_file, check=False)
        except GovernanceError as error:
            _fail(str(error))
        agent = config.name
        store_url = store_url or config.store
    if store_url is None:
        _fail("say whose calls to replay: --agent AGENT.yaml (its store and its name) or --store URL")
    try:
        policy = Policy.from_sources([(_read(path), path) for path in files])
        start = parse_since(since) if since else None
        store = open_store(store_url)
    except (RuleSyntaxError, ValueError, GovernanceError) as error:
        _fail(str(error))
    try:
        report = run_replay(store, policy, agent=agent, since=start, session=session_id)
    except GovernanceError as error:
        _fail(f"reading {store_url}: {error}")
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        for reason, count in sorted(report.skipped.items()):
            click.echo(f"skipped {count}: {reason}", err=True)
        for problem in report.problems:
            click.echo(problem, err=True)
    else:
        _render_replay(report, files, limit)
    if fail_on_flip and report.flips:
        sys.exit(1)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _render_replay(report: Any, files: tuple[str, ...], limit: int) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=f"old → new under {', '.join(files)}", title_justify="left", box=None, header_style="bold")
    for name in ("old", "new", "calls"):
        table.add_column(name, justify="right" if name == "calls" else "left")
    for (old, new), count in sorted(report.table.items(), key=lambda item: (item[0][0] == item[0][1], item[0])):
        style = "" if old == new else "red bold"
        table.add_row(old, new, str(count), style=style)
    console.print(table)
    if report.flips:
        flips = Table(title=f"calls that would flip ({len(report.flips)})", title_justify="left", box=None,
                      header_style="bold")
        for name in ("trace", "session", "tool", "old → new", "rule", "why"):
            flips.add_column(name, overflow="fold")
        for flip in report.flips[:limit]:
            flips.add_row(flip.trace, flip.session, _escape(flip.tool), f"{flip.old} → {flip.new}",
                          _escape(flip.rule or "-"), _escape(flip.reason))
        console.print()
        console.print(flips)
        if len(report.flips) > limit:
            console.print(f"… and {len(report.flips) - limit} more (--limit, or --json for all)")
    if report.skipped:
        console.print("\n[yellow]Skipped[/]:")
        for reason, count in sorted(report.skipped.items()):
            console.print(f"  {count}  {_escape(reason)}")
        for problem in report.problems[:limit]:
            console.print(f"    {_escape(problem)}")
    skipped = sum(report.skipped.values())
    console.print(f"\n{report.replayed} call{'s' if report.replayed != 1 else ''} replayed, {skipped} skipped, "
                  f"{len(report.flips)} would flip")
