"""The CLI's argument handling: `-p` anywhere, and the command the demo's hints print (run as printed)."""

from __future__ import annotations

import sys
from pathlib import Path

from airduck.cli.app import hoist_project
from airduck.cli.invocation import command, command_prefix


def test_project_flag_is_accepted_after_the_subcommand():
    assert hoist_project(["tables", "-p", "x"]) == ["-p", "x", "tables"]
    assert hoist_project(["runs", "show", "ID", "--project", "x", "--json"]) == ["--project", "x", "runs", "show",
                                                                                 "ID", "--json"]
    assert hoist_project(["tables", "--project=x"]) == ["--project=x", "tables"]
    assert hoist_project(["-p", "x", "tables"]) == ["-p", "x", "tables"]
    # only exact tokens move: a query that mentions -p stays, and nothing after `--`
    assert hoist_project(["sql", "SELECT 1 -p"]) == ["sql", "SELECT 1 -p"]
    assert hoist_project(["sql", "--", "-p", "x"]) == ["sql", "--", "-p", "x"]
    assert hoist_project(["tables", "-p"]) == ["tables", "-p"]  # a missing value stays a usage error


def test_hints_name_the_command_that_started_us(tmp_path: Path):
    venv = tmp_path / "repo" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (tmp_path / "repo" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    script = str(venv / "bin" / "airduck")
    uv_env = {"VIRTUAL_ENV": str(venv), "UV_RUN_RECURSION_DEPTH": "1", "UV_INTERNAL__PARENT_INTERPRETER": "/usr/bin/python3"}
    inside = tmp_path / "repo"
    # `python3 -m uv run airduck demo` from the repo: the same again (uv finds the project upwards)
    assert command_prefix(inside, uv_env, script) == ["python3", "-m", "uv", "run", "airduck"]
    assert command("tables", "-p", "airduck-demo", prefix=command_prefix(inside, uv_env, script)) == (
        "python3 -m uv run airduck tables -p airduck-demo")
    # from a folder outside the uv project: uv must be told where the project is
    assert command_prefix(tmp_path, uv_env, script) == ["python3", "-m", "uv", "run", "--project",
                                                        str((tmp_path / "repo").resolve()), "airduck"]
    # not under uv: the script itself, relative to here
    assert command_prefix(inside, {}, script) == [".venv/bin/airduck"]
    # `python -m airduck`
    assert command_prefix(inside, {}, "/x/airduck/__main__.py", sys.executable)[1:] == ["-m", "airduck"]
