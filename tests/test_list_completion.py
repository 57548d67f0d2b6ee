"""`skipexp list` shows every registry entry (the registries are the oracle) without importing torch;
shell completion comes from Typer and completes config arguments with YAML files."""
from __future__ import annotations

import subprocess
import sys

from conftest import cli

from skipexp.cli import complete_yaml
from skipexp.core import registry


def test_list_shows_every_registered_kind_with_its_description():
    out = " ".join(cli("list", env={"COLUMNS": "300"}, check=0).stdout.split())
    for reg in registry.ALL:
        assert f"{reg.what}s" in out
        for name, doc in reg.docs.items():
            assert f"{name} {doc}" in out, (reg.what, name)


def test_list_one_registry_and_a_wrong_name():
    out = cli("list", "activation", env={"COLUMNS": "300"}, check=0).stdout
    assert all(name in out for name in registry.ACTIVATIONS.names) and "kaiming" not in out
    p = cli("list", "skips", check=0)
    assert "rezero" in p.stdout
    p = cli("list", "activations!", check=2)
    assert p.stderr.startswith("error: list: unknown registry 'activations!'") and "Traceback" not in p.stderr


def test_list_does_not_import_torch():
    code = ("import sys\nfrom skipexp import cli\ntry:\n    cli.main(['list'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nassert 'torch' not in sys.modules, 'torch was imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def complete(words: str, cwd) -> list[str]:
    """What bash completion offers for the last word, through Typer's completion protocol."""
    env = {"_SKIPEXP_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    return cli(cwd=cwd, env=env, check=0).stdout.split()


def test_completion_offers_commands_and_yaml_configs(tmp_path):
    (tmp_path / "configs" / "deep").mkdir(parents=True)
    for f in ("configs/skip.yaml", "configs/plain.yml", "configs/notes.txt", "configs/deep/d64.yaml", "top.yaml"):
        (tmp_path / f).write_text("")
    assert complete("skipexp li", tmp_path) == ["list"]
    assert complete("skipexp l", tmp_path) == ["lesion", "landscape", "list"]
    assert complete("skipexp train ", tmp_path) == ["configs/", "top.yaml"]
    assert complete("skipexp validate configs/", tmp_path) == ["configs/deep/", "configs/plain.yml",
                                                                "configs/skip.yaml"]
    assert complete("skipexp train co", tmp_path) == complete("skipexp train configs/", tmp_path)
    assert complete("skipexp train configs/de", tmp_path) == ["configs/deep/d64.yaml"]  # a lone folder opens


def test_complete_yaml_with_absolute_paths(tmp_path):
    (tmp_path / "a.yaml").write_text("")
    (tmp_path / "b.txt").write_text("")
    assert complete_yaml(f"{tmp_path}/") == [f"{tmp_path}/a.yaml"]
    assert complete_yaml(f"{tmp_path}/zz") == []


def test_show_completion_prints_the_script_for_a_shell(monkeypatch):
    # Typer takes the shell from the process tree (shellingham), which need not hold one: a test runner
    # started by a daemon has no shell above it. Say it is bash.
    import shellingham

    monkeypatch.setattr(shellingham, "detect_shell", lambda *a, **k: ("bash", "/bin/bash"))
    p = cli("--show-completion", "bash", check=0)
    assert "_SKIPEXP_COMPLETE=complete_bash" in p.stdout and "complete " in p.stdout
