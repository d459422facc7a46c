"""The `sluice` command's checks that run before any server starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.cli import main


def test_check_config_accepts_the_defaults(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLUICE_CONFIG", raising=False)
    assert main(["check-config"]) == 0
    assert "<embedded defaults>: OK (1 providers, 1 models)" in capsys.readouterr().out


def test_check_config_names_the_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "sluice.yaml"
    bad.write_text("providers:\n  m: {type: mock}\nmodels:\n  - {name: a, provider: zz, model: b}\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    assert f"invalid config: {bad}: models[0].provider: unknown provider 'zz'" in capsys.readouterr().err


def test_config_comes_from_env(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path) -> None:
    file = tmp_path / "custom.yaml"
    file.write_text("providers:\n  m: {type: mock}\n")
    monkeypatch.setenv("SLUICE_CONFIG", str(file))
    assert main(["check-config"]) == 0
    assert f"{file}: OK (1 providers, 0 models)" in capsys.readouterr().out


def test_serve_refuses_to_start_without_keys(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_API_KEYS", raising=False)
    monkeypatch.delenv("SLUICE_ALLOW_NO_AUTH", raising=False)
    assert main(["serve"]) == 2
    assert "refusing to start without API keys" in capsys.readouterr().err


def test_empty_key_in_list_is_refused(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_API_KEYS", "good,,")
    assert main(["serve"]) == 2
    assert "SLUICE_API_KEYS contains an empty key" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == "0.1.0"


def test_check_config_fails_on_a_project_that_cannot_be_imported(capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path) -> None:
    """As `serve` would fail: one line naming the file, the key path and the import error."""
    bad = tmp_path / "sluice.yaml"
    bad.write_text("providers:\n  m: {type: mock}\nprojects:\n  - {name: broken, module: sluice_no_such_module}\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"sluice: invalid config: {bad}: projects[0].module (sluice_no_such_module): cannot be "
                            "imported: ModuleNotFoundError: No module named 'sluice_no_such_module'\n")


def test_check_config_fails_on_a_project_module_that_is_not_a_plugin(capsys: pytest.CaptureFixture[str],
                                                                     tmp_path: Path) -> None:
    bad = tmp_path / "sluice.yaml"
    bad.write_text("providers:\n  m: {type: mock}\nprojects:\n  - {name: json, module: json}\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    assert f"{bad}: projects[0].module (json): not a project plugin" in capsys.readouterr().err


def test_serve_documents_reuse_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--reuse-port" in capsys.readouterr().out


def test_reload_without_a_running_gateway_says_so(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path))
    assert main(["reload", "--port", "18999"]) == 1
    assert capsys.readouterr().err == (f"sluice: no gateway on port 18999 found: {tmp_path}/sluice-18999.pid does not "
                                       "exist (is `sluice serve` running with this SLUICE_DATA_DIR? "
                                       "--pid PID names the process)\n")


def test_check_config_json_reports_for_a_reload(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """What the supervisor reads before a reload: the verdict and the shutdown grace it will drain with."""
    good = tmp_path / "good.yaml"
    good.write_text("providers:\n  m: {type: mock}\nserver: {shutdown_grace_seconds: 12}\n")
    assert main(["check-config", "--json", "--config", str(good)]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "summary": f"{good}: OK (1 providers, 0 models)",
                                                   "shutdown_grace_seconds": 12.0}
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  m: {type: mock}\nmodels:\n  - {name: a, provider: zz, model: b}\n")
    assert main(["check-config", "--json", "--config", str(bad)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["error"].startswith(f"{bad}: models[0].provider: unknown provider 'zz'")
