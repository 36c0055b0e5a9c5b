"""The ``corral`` command line.

Each command imports what it needs inside its own function: ``corral --help`` must answer at once,
without loading lark, rich or a store driver it will not use.

One module per command group (``rules``, ``agent``: validate/run/chat/recover/doctor/session/phase,
``store``: approvals/sessions/audit/why, ``mcp``, ``hook``, ``serve``: serve/principals). Adding one: write
its module beside these, register it in ``_add_commands`` below, and give it a help text that teaches and
examples in its epilog.
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


# -- the command groups, one module each; their heavy imports stay inside the commands ------------------

def _add_commands() -> None:
    from corral.cli import agent, hook, mcp, rules, serve, store

    for command in (rules.rules, agent.validate, agent.run, agent.chat, agent.recover, agent.doctor, agent.session,
                    agent.phase, store.approvals, store.sessions, store.audit, store.why, mcp.mcp_proxy, hook.hook,
                    serve.serve, serve.principals):
        main.add_command(command)


_add_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
