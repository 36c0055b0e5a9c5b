"""Commands that run an agent file: validate, run, chat, recover, doctor, session exec, phase.

``corral run`` exit codes: 0 end_turn, 3 awaiting_approval, 4 awaiting_client, 1 error or an invalid agent file,
2 any other stop (max_iterations, timeout, budget_stop).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

# ------------------------------------------------------------------------------------------- validate


@click.command(epilog="""\b
Examples:
  corral validate examples/refund_desk/agent.yaml
  corral validate agent.yaml --json

\b
Exit status: 0 valid, 1 invalid (every problem is listed with its path and bad value).
""")
@click.argument("agent_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print {valid, problems: [{path, message}]} as JSON.")
def validate(agent_file: str, as_json: bool) -> None:
    """Check an agent file: keys and types, tools and compensations, the rules file, import paths."""
    from corral.harness.config import AgentConfigError, load_agent

    try:
        config = load_agent(agent_file)
    except AgentConfigError as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "problems": [{"path": p, "message": m} for p, m in exc.problems]},
                                  indent=2))
        else:
            for path, message in exc.problems:
                click.echo(f"{agent_file}: {path}: {message}", err=True)
            click.echo(f"{agent_file}: invalid ({len(exc.problems)} problem(s))", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"valid": True, "problems": []}))
    else:
        click.echo(f"{agent_file}: valid agent {config.name!r} ({len(config.tools)} tool entries, "
                   f"model {config.model.provider})")


# ------------------------------------------------------------------------------------------------ run


def _load_harness(agent_file: str, principal: str | None, store: str | None) -> Any:
    from corral.errors import GovernanceError
    from corral.harness.config import AgentConfigError, load_agent
    from corral.harness.runtime import Harness

    try:
        config = load_agent(agent_file)
        return Harness(config, store=store, principal=principal)
    except AgentConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except GovernanceError as exc:
        click.echo(f"{agent_file}: {exc}", err=True)
        sys.exit(1)


def _recovery_governor(agent_file: str, store: str | None) -> Any:
    """Tools and store from the agent file, no model: an agent file made for the hook or the proxy recovers too."""
    from corral.errors import GovernanceError
    from corral.harness.config import AgentConfigError, load_agent
    from corral.integrations.claude_code.facts import recovery_governor

    try:
        return recovery_governor(load_agent(agent_file), store=store)
    except AgentConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except GovernanceError as exc:
        click.echo(f"{agent_file}: {exc}", err=True)
        sys.exit(1)


class LiveView:
    """What a person watching ``corral run`` sees: the phase, each call and its decision, the budget."""

    COLOURS = {"allowed": "green", "flagged": "yellow", "approved": "green", "blocked": "red", "denied": "red",
               "pending": "magenta", "refused": "red", "failed": "red", "deferred": "cyan"}

    def __init__(self, console: Any) -> None:
        self.console = console
        self.phase: str | None = None

    def gauge(self, budget: dict[str, Any]) -> str:
        if not budget or budget.get("limit") is None:
            return "[dim]no budget[/]"
        pct = budget.get("pct") or 0.0
        filled = min(20, int(pct / 5))
        colour = "green" if not budget.get("gate") else ("yellow" if budget["gate"] == "degrade" else "red")
        gate = f" {budget['gate']}" if budget.get("gate") else ""
        spent = f"{budget['spent']:.2f}" if budget["spent"] >= 1 or budget["spent"] == 0 else f"{budget['spent']:.4f}"
        return (f"[{colour}]{'█' * filled}{'░' * (20 - filled)}[/] ${spent}/${budget['limit']:.2f}"
                f" ({pct:.0f}%){gate}")

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        from rich.markup import escape

        c = self.console
        if kind == "session":
            verb = "resuming" if data["resumed"] else "session"
            c.print(f"[bold]{verb}[/] {data['session']} · phase {data['phase']}")
            self.phase = data["phase"]
        elif kind == "resume":
            c.print(f"[magenta]re-submitting paused call(s):[/] {', '.join(data['calls'])}")
        elif kind == "text":
            c.print(f"[cyan]model:[/] {escape(data['text'])}")
        elif kind == "call":
            decision = data.get("decision") or "error"
            result = data.get("result")
            failed = isinstance(result, dict) and bool(result.get("error"))
            if failed and decision in ("allowed", "flagged", "approved"):
                decision = "failed"
            colour = self.COLOURS.get(decision, "white")
            args = json.dumps(data.get("args") or {}, ensure_ascii=False)
            if len(args) > 70:
                args = args[:67] + "..."
            c.print(f"  [{colour}]{decision:<9}[/] {data['tool']}{escape('(' + args + ')')}")
            if isinstance(result, dict) and (result.get("blocked") or result.get("denied") or failed):
                reason = result.get("reason") or result.get("error")
                c.print(f"            [dim]{escape(str(reason))}[/]")
                if result.get("hint"):
                    c.print(f"            [dim]hint: {escape(result['hint'])}[/]")
            elif data.get("reason"):
                c.print(f"            [dim]{escape(str(data['reason']))}[/]")
            if isinstance(result, dict) and result.get("timed_out"):
                c.print("            [red]→ killed at its timeout[/]")
            elif isinstance(result, dict) and isinstance(result.get("stdout"), str) and result["stdout"].strip():
                lines = result["stdout"].strip().splitlines()
                shown = " | ".join(line.strip() for line in lines[:3])[:100]
                more = f" (+{len(lines) - 3} lines)" if len(lines) > 3 else ""
                c.print(f"            [dim]→ {escape(shown)}{more}[/]")
            if data.get("budget"):
                c.print(f"            {self.gauge(data['budget'])}")
            phase = data.get("phase")
            if phase and phase != self.phase:
                c.print(f"[bold blue]── phase: {phase} ──[/]")
                self.phase = phase
        elif kind == "pending":
            c.print(f"  [magenta]pending  [/] {data['tool']}: {escape(data['reason'])}")
        elif kind == "error":
            c.print(f"[red]{escape(data['error'])}[/]")
        elif kind == "stop":
            c.print(f"[bold]stop:[/] {data['stop_reason']} · {self.gauge(data['budget'])}")


@click.command(epilog="""\b
Examples:
  corral run examples/refund_desk/agent.yaml "Refund order A1"
  corral run agent.yaml "Refund order A1" --json > result.json
  corral approvals approve APPROVAL_ID --as bob        # when it stopped awaiting_approval
  corral run agent.yaml --session SESSION_ID            # resume: the approved call runs exactly once
  corral run agent.yaml --session SESSION_ID --tool-result '{"CALL_ID": {"path": "a.txt"}}'
                                                        # after awaiting_client: the client's results

\b
Exit status: 0 end_turn · 3 awaiting_approval · 4 awaiting_client · 1 error, invalid agent file
             or refused tool results · 2 max_iterations, timeout or budget_stop
""")
@click.argument("agent_file", type=click.Path(dir_okay=False))
@click.argument("prompt", required=False)
@click.option("--session", "session_id", help="Resume a stored session (paused calls are re-submitted first).")
@click.option("--as", "principal", help="Who the session acts for (default: $USER).")
@click.option("--store", help="Override the agent file's store URL.")
@click.option("--tool-result", "tool_result",
              help="With --session: a JSON object mapping each awaited client call id to its result.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object {session, stop_reason, answer, budget, traces} (and client_calls "
                   "when awaiting_client); nothing else on stdout.")
def run(agent_file: str, prompt: str | None, session_id: str | None, principal: str | None, store: str | None,
        tool_result: str | None, as_json: bool) -> None:
    """Run an agent on a prompt (or resume a session) until it stops, showing each governed call."""
    from rich.console import Console

    from corral.harness.loop import run as run_loop

    if not prompt and not session_id:
        raise click.UsageError("give a PROMPT, or --session ID to resume a session")
    tool_results = None
    if tool_result is not None:
        if not session_id:
            raise click.UsageError("--tool-result answers a paused session: give --session ID too")
        try:
            tool_results = json.loads(tool_result)
        except ValueError as exc:
            click.echo(f"error: --tool-result is not valid JSON: {exc}", err=True)
            sys.exit(1)
    harness = _load_harness(agent_file, principal, store)
    console = Console(stderr=as_json, highlight=False)
    view = LiveView(console) if not as_json else None
    try:
        result = run_loop(harness, prompt, session_id=session_id, events=view, tool_results=tool_results)
    except Exception as exc:  # e.g. an unknown session id, results for calls never asked
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        harness.close()
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str, ensure_ascii=False))
    else:
        console.print(f"\n[bold]answer:[/] {result.answer}")
        if result.pending_approval:
            console.print(f"approve with: corral approvals approve {result.pending_approval} --as NAME "
                          f"--store {harness.config.store}")
            console.print(f"then resume:  corral run {agent_file} --session {result.session}")
        for c in result.client_calls:
            console.print(f"client call {c['id']}: {c['name']}({json.dumps(c['args'], ensure_ascii=False)})")
        if result.client_calls:
            console.print(f"run them, then: corral run {agent_file} --session {result.session} "
                          "--tool-result '{\"ID\": RESULT, …}'")
        console.print(f"[dim]session {result.session} · {len(result.traces)} traces · "
                      f"corral sessions show {result.session} --agent {agent_file}[/]")
    sys.exit(result.exit_code)


@click.command(epilog="""\b
Example:
  corral chat examples/refund_desk/agent.yaml
  (type a message; an empty line or Ctrl-D ends the chat)
""")
@click.argument("agent_file", type=click.Path(dir_okay=False))
@click.option("--session", "session_id", help="Continue a stored session.")
@click.option("--as", "principal", help="Who the session acts for (default: $USER).")
def chat(agent_file: str, session_id: str | None, principal: str | None) -> None:
    """Talk to an agent turn by turn in one session."""
    from rich.console import Console

    from corral.harness.loop import run as run_loop

    harness = _load_harness(agent_file, principal, None)
    console = Console(highlight=False)
    view = LiveView(console)
    try:
        while True:
            try:
                prompt = click.prompt("you", default="", show_default=False)
            except (EOFError, click.Abort):
                break
            if not prompt.strip():
                break
            result = run_loop(harness, prompt, session_id=session_id, events=view)
            session_id = result.session
            console.print(f"[bold]agent:[/] {result.answer}")
            if result.stop_reason == "awaiting_approval":
                console.print("the session waits for an approval; approve it, then continue this chat")
    finally:
        harness.close()


# -------------------------------------------------------------------------------------------- recover


@click.command(epilog="""\b
Examples:
  corral recover --agent agent.yaml
  corral recover --store sqlite:///.corral/corral.db --tools myapp.tools --agent-name refund-desk --json
""")
@click.option("--agent", "agent_file", type=click.Path(dir_okay=False), help="Agent file: tools and store from it.")
@click.option("--store", help="Store URL (default: the agent file's).")
@click.option("--tools", "tools_module", help="Importable module with a `register(governor)` function or a "
              "`governor` attribute, instead of --agent.")
@click.option("--json", "as_json", is_flag=True, help="Print the recovery report as JSON.")
def recover(agent_file: str | None, store: str | None, tools_module: str | None, as_json: bool) -> None:
    """Roll back transactions a crashed process left open; release expired budget reservations."""
    import importlib

    from corral.governance.governor import Governor

    if agent_file:
        gov = _recovery_governor(agent_file, store)
    elif tools_module:
        module = importlib.import_module(tools_module)
        gov = getattr(module, "governor", None)
        if gov is None:
            if store is None:
                raise click.UsageError("--tools without a module-level governor needs --store")
            gov = Governor(agent=getattr(module, "AGENT", "agent"), store=store)
            module.register(gov)
    else:
        raise click.UsageError("give --agent agent.yaml or --tools module")
    report = gov.recover()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    if not report.transactions:
        click.echo(f"nothing to recover; {report.released_reservations} expired reservation(s) released")
    for tx in report.transactions:
        click.echo(f"transaction {tx.id} (session {tx.session}): {tx.state}; compensated "
                   f"{[c['tool'] for c in tx.compensated]}, unknown {[u['tool'] for u in tx.unknown]}, "
                   f"failed {[f['tool'] for f in tx.failed]}")


# --------------------------------------------------------------------------------------------- doctor


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json: bool) -> None:
    """Say what this machine gives corral: sandbox isolation in force, stores, optional extras."""
    import importlib.util
    import platform

    from corral.harness.sandbox import doctor as sandbox_doctor

    def installed(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ImportError:  # a missing parent package
            return False

    from corral.harness.sandbox import isolation_problem
    from corral.harness.tools.browser import chromium_report

    extras = {name: installed(mod) for name, mod in
              (("postgres", "psycopg"), ("mcp", "mcp"), ("openai", "openai"), ("anthropic", "anthropic"),
               ("bedrock", "boto3"), ("gemini", "google.genai"), ("browser", "playwright"),
               ("otel", "opentelemetry.sdk"))}
    problem = isolation_problem()
    commands = ({"runs": True, "isolation": "bubblewrap", "detail": "shell and python run under bubblewrap"}
                if problem is None else
                {"runs": False, "isolation": None,
                 "detail": f"shell and python refuse to start: {problem}"})
    report = {"python": platform.python_version(), "sandbox": sandbox_doctor(), "commands": commands,
              "chromium": chromium_report(), "extras": extras}
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    sandbox = report["sandbox"]
    click.echo(f"python {report['python']}")
    click.echo(f"commands: {commands['detail']}")
    chromium = report["chromium"]
    click.echo(f"browser: {chromium['problem'] or (chromium['version'] or 'Chromium') + ' at ' + chromium['path']}")
    click.echo(f"sandbox isolation: {sandbox.get('isolation')}")
    for key, value in sandbox.items():
        if key != "isolation":
            click.echo(f"  {key}: {value}")
    click.echo("extras: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in extras.items()))


# ------------------------------------------------------------------------------------ session exec


@click.group()
def session() -> None:
    """Work with one session's sandbox."""


@session.command("exec", context_settings={"ignore_unknown_options": True}, epilog="""\b
Example:
  corral session exec 01J... --agent agent.yaml -- ls -la
""")
@click.argument("session_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--agent", "agent_file", type=click.Path(dir_okay=False), required=True, help="The agent file.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds before the command is killed.")
def session_exec(session_id: str, command: tuple[str, ...], agent_file: str, timeout: float) -> None:
    """Run COMMAND in a session's sandbox (its workspace), without the model and without token cost."""
    from corral.harness.sandbox import Sandbox, SandboxUnavailable, isolation_for

    harness = _load_harness(agent_file, None, None)
    try:
        if harness.governor.store.get_session(session_id) is None:
            click.echo(f"error: no session {session_id!r}", err=True)
            sys.exit(1)
        try:
            box = Sandbox(harness.workspace_for(session_id), timeout=timeout, isolation=isolation_for(harness.config))
        except SandboxUnavailable as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        result = box.run(list(command))
    finally:
        harness.close()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.timed_out:
        click.echo(f"killed after {timeout:g}s", err=True)
    sys.exit(result.exit_code if result.exit_code >= 0 else 124)


# ---------------------------------------------------------------------------------------------- phase


@click.command(epilog="""\b
Examples:
  corral phase SESSION_ID decide --agent agent.yaml
  corral phase SESSION_ID explore --agent agent.yaml
""")
@click.argument("session_id")
@click.argument("target", type=click.Choice(["explore", "decide", "commit"]))
@click.option("--agent", "agent_file", type=click.Path(dir_okay=False), required=True, help="The agent file.")
@click.option("--store", help="Override the agent file's store URL.")
@click.option("--plan", "plan_id", help="With commit: the plan to bind (default: the latest proposed).")
def phase(session_id: str, target: str, agent_file: str, store: str | None, plan_id: str | None) -> None:
    """Move a session between phases from a shell, with the same rules as the API.

    A commit opened here is held by the session (not by this short-lived process), so recovery leaves it
    for the agent, proxy or hook that carries it out.
    """
    from corral.errors import GovernanceError
    from corral.harness.config import AgentConfigError, load_agent
    from corral.harness.runtime import governor_from_config

    try:
        gov = governor_from_config(load_agent(agent_file, check=False), store=store)
    except (AgentConfigError, GovernanceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    try:
        s = gov.session(id=session_id)
        if target == "commit":
            plan = plan_id or (s.plan.id if s.plan is not None else None)
            tx = s.begin_commit(plan, held=True)
            click.echo(f"{session_id}: commit (transaction {tx.id}, plan {plan or '-'})")
        else:
            s.back_to(target)
            click.echo(f"{session_id}: {target}")
    except GovernanceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        gov.close()
