"""Checking a downloaded scoring bundle before any process of ours loads it.

A LightGBM model file cut short or with flipped bytes does not raise: LightGBM's parser can
crash the process that reads it, and its error output may echo that process's memory. So the
files are never handed to LightGBM in a worker unchecked:

- a bundle logged by this release carries ``checksums.json`` (SHA-256 of every other artifact,
  recorded when it was logged and registered): each file must be present with its digest;
- a bundle without one (logged by an earlier release) is loaded once in a child process, whose
  crash or error is reported in one line, its output kept out of the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

MANIFEST = "checksums.json"
CHILD_TIMEOUT_SECONDS = 120.0
# What the child process may echo into a message: its last line, cut short and printable only.
MAX_REASON_CHARS = 160
_CHILD = "kam.models.integrity"


class BundleIntegrityError(ValueError):
    """A scoring bundle's files are missing, altered, or do not load."""


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(artifacts: dict[str, str], directory: Path) -> Path:
    """Write the digests of ``artifacts`` (name -> file) to ``directory/checksums.json``.

    The manifest names each file by its base name, the name it has in the logged bundle's
    ``artifacts/`` folder.
    """
    entries = {Path(path).name: file_digest(Path(path)) for path in artifacts.values()}
    target = directory / MANIFEST
    target.write_text(json.dumps({"sha256": entries}, indent=1, sort_keys=True))
    return target


def _artifacts_dir(bundle: Path) -> Path:
    return bundle / "artifacts"


def verify_manifest(bundle: Path) -> bool:
    """Check every file the manifest names against its digest.

    Returns
    -------
    bool
        False when the bundle has no manifest (nothing to check against); True when every
        file matched.

    Raises
    ------
    BundleIntegrityError
        Naming the first file that is missing or whose digest differs, or an unreadable
        manifest.
    """
    folder = _artifacts_dir(bundle)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        entries = json.loads(manifest.read_text())["sha256"]
        if not isinstance(entries, dict) or not entries:
            raise ValueError("no entries")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise BundleIntegrityError(f"the bundle's {MANIFEST} is unreadable ({err})") from None
    for name, expected in sorted(entries.items()):
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise BundleIntegrityError(f"the bundle's file {name} is missing")
        if file_digest(path) != expected:
            raise BundleIntegrityError(
                f"the bundle's file {name} differs from the one registered (SHA-256 mismatch: "
                "truncated or altered)"
            )
    return True


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    printable = "".join(c if c.isprintable() else "?" for c in last)
    return printable[:MAX_REASON_CHARS]


def load_in_child(bundle: Path, timeout: float = CHILD_TIMEOUT_SECONDS) -> None:
    """Load the bundle's models in a child process and score one empty row there.

    Raises
    ------
    BundleIntegrityError
        When the child fails, crashes (a signal) or hangs; the message holds at most one short
        printable line of its output, never the output itself.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-m", _CHILD, str(bundle)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env={**os.environ, "PYTHONFAULTHANDLER": ""},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BundleIntegrityError(
            f"loading the bundle took over {timeout:.0f} s in a test process"
        ) from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        reason = f"the test process that loaded it was killed by signal {-done.returncode}"
    else:
        reason = f"it does not load: {_one_line(done.stderr) or 'no message'}"
    raise BundleIntegrityError(f"the bundle is corrupt: {reason}")


def check_bundle(bundle: Path) -> str:
    """Check a downloaded bundle by its manifest, else by loading it in a child process.

    Returns
    -------
    str
        How it was checked: ``"checksums"`` or ``"child process"``.

    Raises
    ------
    BundleIntegrityError
        When it fails either check.
    """
    if verify_manifest(bundle):
        return "checksums"
    load_in_child(bundle)
    return "child process"


def _child_main(bundle: str) -> None:
    """Load the models from a bundle folder and score one row of missing values."""
    import numpy as np

    from kam.models.scorer import Scorer

    folder = _artifacts_dir(Path(bundle))
    scorer = Scorer.load_dir(folder)
    row = np.full((1, len(scorer.spec.names)), np.nan)
    for booster in (scorer.defection, scorer.value, scorer.lower, scorer.upper):
        booster.predict(row, num_threads=1)


if __name__ == "__main__":  # the child process of load_in_child
    try:
        _child_main(sys.argv[1])
    except Exception as err:  # one line for the parent, whatever it was
        sys.stderr.write(f"\n{type(err).__name__}: {str(err)[:MAX_REASON_CHARS]}\n")
        sys.exit(1)
