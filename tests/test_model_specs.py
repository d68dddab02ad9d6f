"""`load_model` takes every spec the command does: `py:` and `scripted:` name Python code."""

import textwrap

import pytest

from decompose import ConfigError, Orchestrator, ScriptedChatModel, load_model

RULES = textwrap.dedent("""
    from decompose.models.scripted import ScriptedChatModel
    rules = [(r"capital of France", "Paris")]
    default = "no idea"
    latency = 0.25

    def make():
        return ScriptedChatModel(rules=[], default="made")
""")


@pytest.fixture
def code(tmp_path, monkeypatch):
    (tmp_path / "specmod.py").write_text(RULES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DECOMPOSE_MODEL", raising=False)
    return tmp_path


def test_scripted_spec_builds_a_scripted_model_from_rules(code):
    model = load_model("scripted:specmod.py")
    assert isinstance(model, ScriptedChatModel) and model.default == "no idea" and model.latency == 0.25
    assert model.invoke("What is the capital of France?").content == "Paris"
    assert load_model("scripted:specmod.py:make").invoke("hi").content == "made"  # a named factory


@pytest.mark.parametrize("spec", ["py:specmod:make", "py:specmod.py:make"])
def test_py_spec_takes_a_module_or_a_file(code, spec):
    assert load_model(spec).invoke("hi").content == "made"


def test_the_environment_and_model_arguments_take_them_too(code, monkeypatch):
    monkeypatch.setenv("DECOMPOSE_MODEL", "py:specmod:make")
    assert load_model().invoke("hi").content == "made"
    orch = Orchestrator("scripted:specmod.py", fallbacks=["py:specmod:make"])
    assert isinstance(orch.model, ScriptedChatModel) and orch.fallbacks[0].default == "made"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("py:specmod:rules", "gives a list, not a chat model"),
        ("py:specmod", "is not of the form py:MODULE:ATTR"),
        ("scripted:", "names no file"),
        ("scripted:missing.py", "cannot read 'missing.py'"),
        ("scripted:specmod.py:nothing", "has no attribute 'nothing'"),
    ],
)
def test_bad_python_specs_say_what_is_wrong(code, spec, message):
    with pytest.raises(ConfigError, match=message):
        load_model(spec)


def test_python_specs_take_no_backend_options(code):
    with pytest.raises(ConfigError, match="takes no options"):
        load_model("scripted:specmod.py", temperature=0)


def test_an_unknown_spec_lists_every_kind():
    with pytest.raises(ConfigError) as caught:
        load_model("nope:x")
    assert all(kind in caught.value.hint for kind in ("openai:", "hf:", "smollm2", "py:MODULE:ATTR", "scripted:"))
