"""How to run airduck again from where the user is: the words of the command that started this process.

After `python3 -m uv run airduck demo` there is no `airduck` on PATH, so hints that say `airduck tables` do not
work as printed. :func:`command_prefix` answers `airduck`, `python3 -m uv run airduck` (with `--project` when the
current folder is outside the uv project), `.venv/bin/airduck` or `python -m airduck`, whichever started us.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _word(path: Path, cwd: Path) -> str:
    """A path as short as it can be said from `cwd` (relative inside it, else absolute)."""
    path = path.absolute()
    if _within(path, cwd):
        rel = path.relative_to(cwd)
        return str(rel) if len(rel.parts) > 1 else f"./{rel}"
    return str(path)


def command_prefix(cwd: Path | None = None, env: Mapping[str, str] | None = None, argv0: str | None = None,
                   executable: str | None = None) -> list[str]:
    """The words that run airduck from `cwd` the way this process was started (default: this process)."""
    cwd = (cwd or Path.cwd()).absolute()
    env = os.environ if env is None else env
    script = Path(argv0 if argv0 is not None else sys.argv[0])
    executable = executable or sys.executable
    path = env.get("PATH")
    if script.name != "airduck":  # `python -m airduck` (argv[0] is airduck/__main__.py)
        on_path = shutil.which("python3", path=path)
        python = ("python3" if on_path and Path(on_path).resolve() == Path(executable).resolve()
                  else _word(Path(executable), cwd))
        return [python, "-m", "airduck"]
    script = script if script.is_absolute() else (cwd / script)
    venv = env.get("VIRTUAL_ENV")
    # started by `uv run`: its PATH has the venv's bin folder, the user's shell (after uv exits) does not
    if env.get("UV_RUN_RECURSION_DEPTH") and venv and script.resolve().parent == (Path(venv) / "bin").resolve():
        project = Path(venv).resolve().parent
        uv = (["python3", "-m", "uv"] if env.get("UV_INTERNAL__PARENT_INTERPRETER") or not shutil.which("uv", path=path)
              else ["uv"])
        where = [] if _within(cwd.resolve(), project) else ["--project", str(project)]
        return [*uv, "run", *where, "airduck"]
    on_path = shutil.which("airduck", path=path)
    if on_path and Path(on_path).resolve() == script.resolve():
        return ["airduck"]
    return [_word(script, cwd)]


def command(*words: str, prefix: list[str] | None = None) -> str:
    """A shell command line: the prefix (default :func:`command_prefix`) and `words`, quoted where needed."""
    return shlex.join([*(prefix if prefix is not None else command_prefix()), *words])


def activate_command(cwd: Path | None = None) -> str | None:
    """`source …/bin/activate` of the virtual environment we run in (None outside one)."""
    if sys.prefix == sys.base_prefix:
        return None
    return shlex.join(["source", _word(Path(sys.prefix) / "bin" / "activate", (cwd or Path.cwd()).absolute())])
