"""Skills in the Agent Skills folder format: names and descriptions up front, the body on load_skill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from corral.harness.config import AgentConfigError, load_agent
from corral.harness.loop import run
from corral.harness.models.scripted import ScriptedModel
from corral.harness.runtime import Harness

INVOICE_SKILL = """---
name: invoice-review
description: How to review an invoice before paying it. Use when an invoice or a payment is mentioned.
---
# Reviewing an invoice

1. Check the amount against the purchase order in `checklist.md`.
2. Refuse anything above 1000 without a second approver.
"""


def skill(folder: Path, text: str, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(text)
    for name, content in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    return folder


def agent(tmp_path: Path, skills: list[str], script: list | None = None) -> Path:
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script or [{"text": "hi"}]))
    doc = {"name": "skilled", "model": {"provider": "scripted", "script": "script.yaml"}, "skills": skills,
           "tools": [{"builtin": "files"}],
           "store": f"sqlite:///{tmp_path / 'corral.db'}", "workspace": str(tmp_path / "ws")}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Recording(ScriptedModel):
    """The scripted model, keeping the system prompts it was sent."""

    def complete(self, *, system, messages, tools, max_tokens):
        self.systems = [*getattr(self, "systems", []), system]
        return super().complete(system=system, messages=messages, tools=tools, max_tokens=max_tokens)


def test_the_model_sees_names_and_descriptions_and_loads_a_body_and_its_files(tmp_path):
    skill(tmp_path / "skills" / "invoice-review", INVOICE_SKILL, {"checklist.md": "- PO number matches\n"})
    skill(tmp_path / "skills" / "tone", "---\nname: tone\ndescription: Write short, plain answers.\n---\nBe brief.\n")
    script = [{"tool_calls": [{"name": "load_skill", "args": {"name": "invoice-review"}},
                              {"name": "read_file", "args": {"path": "skills/invoice-review/checklist.md"}},
                              {"name": "load_skill", "args": {"name": "nope"}}]},
              {"text": "Reviewed."}]
    path = agent(tmp_path, ["skills"], script)
    model = Recording.from_file(tmp_path / "script.yaml")
    harness = Harness(load_agent(path), principal="alice", model=model)
    try:
        result = run(harness, "Should we pay INV-7?")
        transcript = harness.governor.store.get_session(result.session)["harness"]["transcript"]
    finally:
        harness.close()
    system = model.systems[0]
    assert "- invoice-review: How to review an invoice before paying it." in system
    assert "- tone: Write short, plain answers." in system
    assert "Refuse anything above 1000" not in system  # bodies are disclosed only on load
    loaded, checklist, missing = [m["content"] for m in transcript if m["role"] == "tool"]
    loaded = json.loads(loaded)
    assert loaded["instructions"].startswith("# Reviewing an invoice") and loaded["files"] == ["checklist.md"]
    assert loaded["folder"] == "skills/invoice-review"
    assert json.loads(checklist)["content"] == "- PO number matches\n"
    assert "argument 'name' should be one of 'invoice-review', 'tone'" in json.loads(missing)["error"]
    assert harness.governor.tools["load_skill"].effect == "read"
    assert harness.tools["load_skill"].parameters["properties"]["name"]["enum"] == ["invoice-review", "tone"]


def test_one_skill_folder_can_be_named_directly(tmp_path):
    skill(tmp_path / "invoice-review", INVOICE_SKILL)
    harness = Harness(load_agent(agent(tmp_path, ["invoice-review"])), principal="a")
    try:
        assert list(harness.skills.skills) == ["invoice-review"]
    finally:
        harness.close()


@pytest.mark.parametrize(("make", "message"), [
    (lambda root: (root / "skills" / "empty").mkdir(parents=True), "has no SKILL.md"),
    (lambda root: skill(root / "skills" / "x", "no front matter\n"), "no front matter"),
    (lambda root: skill(root / "skills" / "x", "---\nname: x\n---\nbody\n"), "`description` is missing"),
    (lambda root: skill(root / "skills" / "x", "---\nname: Bad Name\ndescription: d\n---\n"), "`name` must be"),
    (lambda root: skill(root / "skills" / "x", "---\nname: [unclosed\n---\n"), "not valid YAML"),
    (lambda root: (skill(root / "skills" / "a", "---\nname: same\ndescription: d\n---\n"),
                   skill(root / "skills" / "b", "---\nname: same\ndescription: d\n---\n")), "two skills are named"),
])
def test_bad_skill_folders_are_located_errors_at_validate(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(AgentConfigError) as caught:
        load_agent(agent(tmp_path, ["skills"]))
    [(where, what)] = caught.value.problems
    assert where == "skills[0]" and message in what


def test_a_missing_skills_folder_is_a_located_error(tmp_path):
    with pytest.raises(AgentConfigError) as caught:
        load_agent(agent(tmp_path, ["does-not-exist"]))
    assert caught.value.problems[0][0] == "skills[0]" and "is not a folder" in caught.value.problems[0][1]
