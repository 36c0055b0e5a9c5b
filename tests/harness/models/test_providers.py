"""``make_model``: an agent file's ``model:`` to a model, each SDK imported only for its own provider."""

from __future__ import annotations

import subprocess
import sys

import pytest

from corral.harness.models.providers import make_model


def test_an_unknown_provider_is_named_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model provider 'mistral'; expected one of scripted, openai, "
                                         r"anthropic, bedrock, gemini"):
        make_model({"provider": "mistral", "id": "x"}, base_dir=tmp_path)


def test_a_missing_script_names_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"model\.script: file not found: .*nope\.yaml"):
        make_model({"provider": "scripted", "script": "nope.yaml"}, base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"the scripted model needs `script: path/to/script.yaml`"):
        make_model({"provider": "scripted"}, base_dir=tmp_path)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock", "gemini"])
def test_a_hosted_model_needs_an_id(tmp_path, provider):
    with pytest.raises(ValueError, match=rf"the {provider} model needs `id: <model id>`"):
        make_model({"provider": provider}, base_dir=tmp_path)


def test_no_provider_sdk_is_imported_until_a_model_of_it_is_built(tmp_path):
    (tmp_path / "s.yaml").write_text("- text: hi\n")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import corral.harness.models\n"
        "import corral.harness.models.openai, corral.harness.models.anthropic, corral.harness.models.bedrock\n"
        "import corral.harness.models.gemini\n"
        "from corral.harness.models.providers import make_model\n"
        f"make_model({{'provider': 'scripted', 'script': 's.yaml'}}, base_dir=Path({str(tmp_path)!r}))\n"
        "loaded = [m for m in ('openai', 'anthropic', 'boto3', 'botocore', 'google.genai') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "make_model({'provider': 'openai', 'id': 'gpt-4.1'}, base_dir=Path('.'))\n"
        "assert 'openai' in sys.modules and 'anthropic' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
