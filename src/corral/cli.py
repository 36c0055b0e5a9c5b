"""The ``corral`` command line.

Each command imports what it needs inside its own function: ``corral --help`` must answer at once,
without loading lark, rich or a store driver it will not use.

Adding a command group: define it below with ``@main.group()`` (or write it in its own module and
``main.add_command(group)`` at the bottom), give it a help text that teaches, and examples in its epilog.
"""

from __future__ import annotations

import click

_MAIN_EPILOG = """\b
Examples:
  corral run examples/refund_desk/agent.yaml "Refund order A1"     run an agent
  corral validate agent.yaml                       check an agent file
  corral approvals list --agent agent.yaml         pending approvals
  corral audit verify --agent agent.yaml           is the audit log intact?
  corral why TRACE_ID --agent agent.yaml           why was that call allowed?
  corral mcp-proxy --agent agent.yaml -- python -m mcp_server_time   govern any MCP server
  corral hook install claude-code --agent agent.yaml                 govern Claude Code
  corral serve agent.yaml                          the HTTP API for a team
  corral principals add alice --role user          an API token for alice
  corral rules check policy.rules                  check a rules file
  corral rules check *.rules --tools send_email,issue_refund
  corral rules check policy.rules --json           diagnostics as JSON
  corral rules test policy.rules policy.tests.yaml  run a policy's test cases
  corral rules export policy.rules --to cedar      the policy in Cedar
  corral rules replay new.rules --agent agent.yaml what new rules would change

Run "corral COMMAND --help" for a command's options and examples.
"""


@click.group(epilog=_MAIN_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="corral", prog_name="corral")
def main() -> None:
    """corral: a governed agent harness.

    A deterministic governance kernel decides, outside the model, whether each tool call may run now,
    with this tool, at this cost — and records a proof trace of why.
    """


# -- corral rules -------------------------------------------------------------------------------------

_RULES_EPILOG = """\b
A rules file has one rule per line:
  TIMEZONE Europe/Berlin
  DEFAULT ALLOW
  BLOCK send_email WHEN phase IS NOT commit
  REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"
  FLAG * WHEN time OUTSIDE 09:00-17:00     # comments start with #
"""


@main.group(epilog=_RULES_EPILOG)
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


# -- the other command groups live in corral.commands; their heavy imports stay inside the commands ----

def _add_commands() -> None:
    from corral.commands import agent, hook, mcp, serve, store
    from corral.commands import rules as rules_commands

    for command in (agent.validate, agent.run, agent.chat, agent.recover, agent.doctor, agent.session, agent.phase,
                    store.approvals, store.sessions, store.audit, store.why, mcp.mcp_proxy, hook.hook, serve.serve,
                    serve.principals):
        main.add_command(command)
    for command in (rules_commands.test, rules_commands.export, rules_commands.import_, rules_commands.replay):
        rules.add_command(command)


_add_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
