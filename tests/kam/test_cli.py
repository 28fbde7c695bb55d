"""The command line: an option means the same in every command, and ``--data`` names the store."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from kam import cli

# typer carries its own copy of click: the commands and options are read through their attributes
COMMANDS: dict[str, Any] = typer.main.get_command(cli.app).commands  # type: ignore[attr-defined]
# Every command that reads or writes the input files or the store. promote compares versions
# on the test accounts their runs logged in MLflow and opens no store.
STORE_COMMANDS = {
    "simulate", "ingest", "features", "train", "score", "serve", "demo", "effects", "plan",
}


def _options(command: Any) -> dict[str, Any]:
    return {
        name: param
        for param in command.params
        if param.param_type_name == "option"
        for name in param.opts
    }


def test_an_option_is_described_the_same_in_every_command() -> None:
    said: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for command_name, command in COMMANDS.items():
        for name, option in _options(command).items():
            said[name][option.help or ""].add(command_name)
    differing = {name: dict(helps) for name, helps in said.items() if len(helps) > 1}
    assert differing == {}
    shared = {name for name, helps in said.items() if len(next(iter(helps.values()))) > 1}
    assert {"--data", "--as-of", "--horizon", "--population", "--decline", "--every", "--out",
            "--model-uri", "--accounts"} <= shared


def test_every_command_that_touches_the_store_takes_data() -> None:
    taking = {name for name, command in COMMANDS.items() if "--data" in _options(command)}
    assert taking == STORE_COMMANDS
    assert set(COMMANDS) - STORE_COMMANDS == {"promote"}


class Reached(Exception):
    """Raised by a stand-in to stop a command where it would start working."""


def _stop(**what: Any) -> Any:
    def stand_in(*args: Any, **kwargs: Any) -> Any:
        raise Reached({**what, "args": args, "kwargs": kwargs})

    return stand_in


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An empty data directory, and settings that name another store."""
    for name in ("CONFIG", "DATA_DIR", "MODEL_URI", "TRACKING_URI", "API_KEYS", "API_KEYS_FILE",
                 "ADMIN_API_KEYS"):
        monkeypatch.delenv(f"KAM_{name}", raising=False)
    monkeypatch.setenv("KAM_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("KAM_STORE_URL", f"duckdb:///{tmp_path / 'elsewhere.duckdb'}")
    data = tmp_path / "cut"
    data.mkdir()
    return {"data": data, "store": data / "kam.duckdb"}


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, list(args))


def test_data_holds_the_input_files_and_the_store_in_every_command(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, store = str(world["data"]), str(world["store"])
    seen: dict[str, str] = {}

    # the commands that fail on an empty directory say which one they looked in
    for args, expected in [
        (("ingest",), f"no orders table in {data}"),
        (("features", "--as-of", "2024-01-01", "--out", "f.parquet"), f"no store at {store}"),
        (("train",), f"no store at {store}"),
    ]:
        result = _invoke(*args, "--data", data)
        assert result.exit_code == 2, result.output
        # one line however long the paths: a path broken across lines cannot be copied
        assert expected in result.output and result.output.count("\n") == 1, args
        seen[args[0]] = data

    # the others are stopped where they would start working
    monkeypatch.setattr("kam.features.synthetic.simulate", _stop())
    result = _invoke("simulate", "--data", data)
    assert isinstance(result.exception, Reached)
    seen["simulate"] = str(result.exception.args[0]["args"][3])

    monkeypatch.setattr("kam.models.registry.load_model", lambda *a, **k: object())
    monkeypatch.setattr("kam.features.store.connect", _stop())
    result = _invoke("score", "--data", data)
    assert isinstance(result.exception, Reached)
    seen["score"] = str(Path(result.exception.args[0]["args"][0].removeprefix("duckdb:///")).parent)
    for command, extra in (("effects", ()), ("plan", ("--capacity", "AR=10h"))):
        result = _invoke(command, "--data", data, *extra)
        assert isinstance(result.exception, Reached), result.output
        url = result.exception.args[0]["args"][0]
        seen[command] = str(Path(url.removeprefix("duckdb:///")).parent)

    captured: list[Any] = []
    monkeypatch.setattr("kam.serving.api.server.run", captured.append)
    assert _invoke("serve", "--data", data).exit_code == 0
    assert captured[0].store_url_for() == f"duckdb:///{store}"
    seen["serve"] = str(captured[0].resolved_data_dir)

    monkeypatch.setattr(cli, "simulate", _stop())
    result = _invoke("demo", "--data", data, "--no-serve")
    assert isinstance(result.exception, Reached)
    seen["demo"] = str(result.exception.args[0]["kwargs"]["data"])

    assert seen == dict.fromkeys(STORE_COMMANDS, data)


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        ("XR=3h", "--capacity: 'XR=3h': unknown owner 'XR'; owners: AR, SR, FR, executive"),
        ("AR=12d", "--capacity: 'AR=12d': AR's capacity is counted in 'h', not 'd'"),
        ("SR=-4h", "SR's capacity must be a non-negative number of h, not '-4'"),
        ("executive=2h", "executive sponsor's capacity is counted in 'visit', not 'h'"),
    ],
    ids=["unknown-owner", "wrong-unit", "negative", "unit-of-another-owner"],
)
def test_a_bad_capacity_names_the_owner_or_unit(
    world: dict[str, Path], capacity: str, message: str
) -> None:
    result = _invoke("plan", "--data", str(world["data"]), "--capacity", capacity)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_bad_option_is_refused_like_a_bad_setting(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    by_option = _invoke("train", "--data", str(world["data"]), "--population", "lately")
    monkeypatch.setenv("KAM_ACTIVITY_WINDOW", "lately")
    by_setting = _invoke("train", "--data", str(world["data"]))
    assert by_option.exit_code == by_setting.exit_code == 2
    assert "setting activity_window: cannot read period 'lately'" in by_option.output
    assert by_option.output == by_setting.output
