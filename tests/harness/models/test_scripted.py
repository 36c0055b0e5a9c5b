"""The scripted model: turns played in order, malformed arguments, the end of the script, resumes, and
the validation of scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.harness.models.base import Message, ToolCall
from corral.harness.models.providers import make_model
from corral.harness.models.scripted import ScriptedModel

SCRIPT = """\
- text: "Let me look the order up."
  tool_calls: [{name: lookup_order, args: {order_id: A1}}]
- tool_calls:
    - {name: issue_refund, args: {order_id: A1, amount: 120}}
    - {name: send_email}
  usage: {input: 500, output: 42}
- text: "Refunded $120."
"""


def play(model: ScriptedModel, transcript: list[Message]) -> Message:
    """One loop step: call the model and append its answer, as the harness does."""
    response = model.complete(system="sys", messages=transcript, tools=[], max_tokens=100)
    message = Message("assistant", response.text, list(response.tool_calls))
    transcript.append(message)
    for call in response.tool_calls:
        transcript.append(Message("tool", "ok", tool_call_id=call.id, name=call.name))
    return message


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "script.yaml"
    path.write_text(SCRIPT)
    return path


def test_turns_are_played_one_per_call_then_the_model_ends_its_turn(script):
    model = ScriptedModel.from_file(script)
    transcript = [Message("user", "Refund A1")]

    first = model.complete(system="sys", messages=transcript, tools=[], max_tokens=100)
    assert first.text == "Let me look the order up."
    assert first.tool_calls == [ToolCall("call_1_1", "lookup_order", {"order_id": "A1"}, '{"order_id": "A1"}')]
    assert first.stop_reason == "tool_use"
    assert first.model == "scripted"
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0  # estimated when not scripted

    transcript.append(Message("assistant", first.text, first.tool_calls))
    transcript.append(Message("tool", "{}", tool_call_id="call_1_1", name="lookup_order"))
    second = model.complete(system="sys", messages=transcript, tools=[], max_tokens=100)
    assert [(c.id, c.name, c.arguments) for c in second.tool_calls] == [
        ("call_2_1", "issue_refund", {"order_id": "A1", "amount": 120}),
        ("call_2_2", "send_email", {}),
    ]
    assert (second.text, second.usage.input_tokens, second.usage.output_tokens) == ("", 500, 42)

    play(model, transcript)  # the second turn again: nothing new was appended
    third = play(model, transcript)
    assert (third.content, third.tool_calls) == ("Refunded $120.", [])

    after = model.complete(system="sys", messages=transcript, tools=[], max_tokens=100)
    assert (after.text, after.tool_calls, after.stop_reason, after.usage.output_tokens) == ("", [], "end_turn", 0)


def test_the_same_transcript_gets_the_same_answer(script):
    model = ScriptedModel.from_file(script)
    transcript = [Message("user", "hi")]
    one = model.complete(system="s", messages=transcript, tools=[], max_tokens=10)
    two = model.complete(system="s", messages=transcript, tools=[], max_tokens=10)
    assert one == two
    one.tool_calls[0].arguments["order_id"] = "changed"  # an answer is a copy, never the script itself
    assert model.complete(system="s", messages=transcript, tools=[], max_tokens=10).tool_calls[0].arguments == {
        "order_id": "A1"}


def test_a_resumed_session_plays_the_turn_after_the_ones_already_in_its_transcript(script):
    """Counted across resumes: the transcript (stored, then reloaded) says how many turns were played."""
    transcript = [Message("user", "Refund A1")]
    play(ScriptedModel.from_file(script), transcript)
    stored = [m.to_dict() for m in transcript]

    resumed = [Message.from_dict(d) for d in stored]  # a new process, a new model
    answer = play(ScriptedModel.from_file(script), resumed)
    assert [c.name for c in answer.tool_calls] == ["issue_refund", "send_email"]
    assert [c.id for c in answer.tool_calls] == ["call_2_1", "call_2_2"]


def test_string_args_simulate_malformed_json(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("""\
- tool_calls:
    - {name: refund, args: '{"order_id": "A1", '}
    - {name: refund, args: '[1, 2]'}
    - {name: refund, args: '{"order_id": "A2"}'}
""")
    calls = ScriptedModel.from_file(path).complete(system="", messages=[], tools=[], max_tokens=10).tool_calls
    bad, not_object, fine = calls
    assert bad.arguments is None and bad.raw_arguments == '{"order_id": "A1", '
    assert bad.error.startswith("arguments are not valid JSON:")
    assert not_object.arguments is None and not_object.error == "arguments must be a JSON object, got list"
    assert (fine.arguments, fine.error) == ({"order_id": "A2"}, None)


def test_a_scripted_stop_reason_and_text_only_turns(tmp_path):
    model = ScriptedModel([{"text": "It was the best of", "stop_reason": "max_tokens"}, {"text": ""}])
    assert model.complete(system="", messages=[], tools=[], max_tokens=4).stop_reason == "max_tokens"
    second = model.complete(system="", messages=[Message("assistant", "x")], tools=[], max_tokens=4)
    assert (second.text, second.stop_reason) == ("", "end_turn")


def test_an_empty_script_ends_at_once(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    response = ScriptedModel.from_file(path).complete(system="", messages=[], tools=[], max_tokens=4)
    assert (response.text, response.tool_calls, response.stop_reason) == ("", [], "end_turn")


@pytest.mark.parametrize(("text", "expected"), [
    ("- text: [unclosed\n", r"s\.yaml: not valid YAML"),
    ("text: hello\n", r"s\.yaml: a script is a list of turns, got dict"),
    ("- hello\n", r"s\.yaml: turn 1: a turn is a mapping with text and/or tool_calls, got 'hello'"),
    ("- text: a\n- txt: b\n", r"s\.yaml: turn 2: unknown key 'txt' \(expected text, tool_calls, usage, stop_reason\)"),
    ("- usage: {input: 1}\n", r"turn 1: a turn needs text, tool_calls or both"),
    ("- text: 42\n", r"turn 1: text must be a string, got 42"),
    ("- tool_calls: {name: x}\n", r"turn 1: tool_calls must be a list"),
    ("- tool_calls: [lookup]\n", r"turn 1: tool_calls\[0\]: a tool call is a mapping \{name, args\}, got 'lookup'"),
    ("- tool_calls: [{name: x, arguments: {}}]\n", r"turn 1: tool_calls\[0\]: unknown key 'arguments'"),
    ("- tool_calls: [{args: {}}]\n", r"turn 1: tool_calls\[0\]: name must be a tool's name, got None"),
    ("- tool_calls: [{name: x, args: [1]}]\n", r"turn 1: tool_calls\[0\]: args must be a mapping"),
    ("- tool_calls: [{name: x, args: {day: 2026-01-02}}]\n", r"turn 1: tool_calls\[0\]: args must be JSON data"),
    ("- text: a\n  usage: {input: -1}\n", r"turn 1: usage\.input must be a whole number ≥ 0, got -1"),
    ("- text: a\n  usage: {inputs: 1}\n", r"turn 1: usage: unknown key 'inputs'"),
    ("- text: a\n  stop_reason: 3\n", r"turn 1: stop_reason must be a non-empty string"),
])
def test_a_bad_script_names_the_file_the_turn_and_the_bad_value(tmp_path, text, expected):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=expected):
        ScriptedModel.from_file(path)


def test_make_model_resolves_the_script_against_the_agent_directory(tmp_path, script, monkeypatch):
    monkeypatch.chdir(Path("/"))
    model = make_model({"provider": "scripted", "script": script.name, "max_tokens": 10}, base_dir=script.parent)
    assert isinstance(model, ScriptedModel)
    assert (model.provider, model.id) == ("scripted", "scripted")
    named = make_model({"provider": "scripted", "script": str(script), "id": "gpt-4.1-nano"}, base_dir=tmp_path)
    assert named.id == "gpt-4.1-nano"  # a fallback keeps its own name in traces and budget labels
