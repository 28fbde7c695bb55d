"""Which code trained a model: the git commit of a checkout, else the installed version."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGE = "kam"
# training/ lies in the checkout's root (kam/training links to it); in an installed copy the
# folder above is site-packages/kam, which no checkout has as its root
_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(_ROOT), *args],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git on the machine, or it hung
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> str:
    """``git:<commit>`` (``+modified`` with uncommitted changes) or ``kam <version>``.

    Git is asked only when the package lies in a checkout's root, so an installed copy inside
    some other repository (a virtual environment in a project folder) is not mistaken for it;
    without git or a checkout, the installed package's version is the answer.
    """
    top = _git("rev-parse", "--show-toplevel")
    if top is not None and Path(top).resolve() == _ROOT:
        commit = _git("rev-parse", "HEAD")
        if commit:
            changed = _git("status", "--porcelain", "--untracked-files=no")
            return f"git:{commit}" + ("+modified" if changed else "")
    try:
        return f"{PACKAGE} {version(PACKAGE)}"
    except PackageNotFoundError:
        return f"{PACKAGE} (version unknown: neither a git checkout nor installed)"
