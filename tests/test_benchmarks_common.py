"""The benchmark result writer: provenance in every result, quick runs kept apart from the committed results."""

from __future__ import annotations

import json

from benchmarks import common


def test_results_record_command_commit_and_machine_and_quick_runs_go_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(common, "QUICK_DIR", tmp_path / "results" / "quick")
    monkeypatch.setattr(common, "machine_info", lambda: {"cpu_model": "cpu", "usable_cpus": 1, "torch_threads": 1,
                                                         "cuda_device": None, "versions": {}, "timestamp": "t"})
    monkeypatch.setattr("sys.argv", [str(common.PACKAGE_DIR / "bench_scan.py"), "--quick"])
    paths = common.write_results("scan", [{"case": "a", "seconds": 0.5}], meta={"quick": True})
    assert paths["json"] == tmp_path / "results" / "quick" / "scan.json"
    payload = json.loads(paths["json"].read_text())
    assert payload["run"]["command"] == "python -m benchmarks.bench_scan --quick" and payload["run"]["quick"]
    commit = payload["run"]["git"]["commit"]
    assert commit is None or len(commit) == 40
    assert "Command: `python -m benchmarks.bench_scan --quick`" in paths["md"].read_text()
    full = common.write_results("scan", [], meta={"quick": False})
    assert full["json"] == tmp_path / "results" / "scan.json"


def test_bench_parser_has_quick():
    assert common.bench_parser("A benchmark.\n\nMore.").parse_args(["--quick"]).quick
