"""Skills in the Agent Skills folder format, disclosed progressively.

A skill is a folder with a ``SKILL.md``: YAML front matter with ``name`` and ``description``, then the
instructions in Markdown; any other files in the folder (scripts, templates, references) belong to it.
``skills: [DIR, …]`` in the agent file names skill folders, or folders of skill folders.

The model is shown only each skill's name and description (a few tokens per skill); when one applies it
calls the read tool ``load_skill(name)``, which answers the instructions and copies the skill's folder
into the session workspace (``skills/NAME/``), where ``read_file`` and the sandbox can reach its files.

A named folder that is not a skill (no ``SKILL.md``), front matter without ``name`` or ``description``,
and two skills with one name are configuration errors at ``corral validate``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from corral.errors import ConfigError

SKILL_FILE = "SKILL.md"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_DESCRIPTION = 1024


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    path: Path  # the skill's folder
    body: str  # the instructions after the front matter

    def files(self) -> list[str]:
        """The skill's other files, relative to its folder."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                      if p.is_file() and p.name != SKILL_FILE)


def parse_skill(folder: Path) -> Skill:
    """Read one skill folder; ``ConfigError`` naming the file and what is wrong."""
    skill_file = folder / SKILL_FILE
    if not skill_file.is_file():
        raise ConfigError(f"{folder} is not a skill: it has no {SKILL_FILE}")
    try:
        text = skill_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {skill_file}: {exc}") from None
    match = re.match(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", text, re.S)
    if match is None:
        raise ConfigError(f"{skill_file}: no front matter (it starts with a `---` line, then `name:` and "
                          "`description:`, then a `---` line)")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{skill_file}: the front matter is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{skill_file}: the front matter is not a mapping")
    name, description = meta.get("name"), meta.get("description")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{skill_file}: `name` must be lowercase letters, digits and hyphens (at most 64), "
                          f"got {name!r}")
    if not isinstance(description, str) or not description.strip():
        raise ConfigError(f"{skill_file}: `description` is missing or empty (it tells the model when to use it)")
    if len(description) > MAX_DESCRIPTION:
        raise ConfigError(f"{skill_file}: `description` is longer than {MAX_DESCRIPTION} characters")
    return Skill(name, " ".join(description.split()), folder, text[match.end():].strip())


def discover(entry: Path) -> list[Skill]:
    """A skill folder, or a folder whose every subfolder is a skill."""
    if not entry.is_dir():
        raise ConfigError(f"{entry} is not a folder")
    if (entry / SKILL_FILE).is_file():
        return [parse_skill(entry)]
    children = sorted(p for p in entry.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not children:
        raise ConfigError(f"{entry} is not a skill: it has no {SKILL_FILE} and no skill folders")
    return [parse_skill(child) for child in children]


class SkillBook:
    """The skills of one agent, by name."""

    def __init__(self, skills: list[Skill]) -> None:
        self.skills = {s.name: s for s in skills}

    @classmethod
    def from_config(cls, config: Any) -> SkillBook:
        skills: list[Skill] = []
        for i, entry in enumerate(config.skills):
            try:
                found = discover(config.path(entry))
            except ConfigError as exc:
                raise ConfigError(f"skills[{i}]: {exc}") from None
            for skill in found:
                if any(s.name == skill.name for s in skills):
                    raise ConfigError(f"skills[{i}]: two skills are named {skill.name!r}")
                skills.append(skill)
        return cls(skills)

    def prompt(self) -> str:
        """What the model sees of the skills: names and descriptions, and how to load one."""
        if not self.skills:
            return ""
        lines = ["Skills (call load_skill(name) for a skill's instructions when it applies):"]
        lines += [f"- {s.name}: {s.description}" for s in self.skills.values()]
        return "\n".join(lines)

    def load(self, name: str, workspace: Path | None) -> dict[str, Any]:
        """The instructions of skill ``name``; its files are copied into ``workspace/skills/NAME``."""
        skill = self.skills.get(name)
        if skill is None:
            raise KeyError(f"no skill named {name!r}; skills: {', '.join(sorted(self.skills)) or 'none'}")
        result: dict[str, Any] = {"name": skill.name, "instructions": skill.body, "files": skill.files()}
        if workspace is not None and result["files"]:
            target = workspace / "skills" / skill.name
            shutil.copytree(skill.path, target, dirs_exist_ok=True)
            result["folder"] = f"skills/{skill.name}"
        return result


def skill_problems(config: Any) -> list[tuple[str, str]]:
    """``corral validate``'s findings for ``skills:``."""
    try:
        SkillBook.from_config(config)
    except ConfigError as exc:
        where, _, message = str(exc).partition(": ")
        return [(where, message)]
    return []


def register_skills(harness: Any) -> SkillBook:
    """Give ``harness`` its skills and the read tool ``load_skill``."""
    book = SkillBook.from_config(harness.config)
    harness.skills = book

    def load_skill(name: str) -> dict[str, Any]:
        """Read a skill's instructions (and get its files into the workspace) by its name."""
        from corral.harness.context import CURRENT

        ctx = CURRENT.get(None)
        return book.load(name, ctx.workspace if ctx is not None else None)

    names = sorted(book.skills)
    harness.expose("load_skill", load_skill, "read",
                   description="Load a skill's full instructions by name; its files are copied into the "
                               "workspace under skills/NAME/. Skills: " + ", ".join(names),
                   parameters={"type": "object", "properties": {"name": {"type": "string", "enum": names}},
                               "required": ["name"], "additionalProperties": False})
    return book
