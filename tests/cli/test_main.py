"""The program entry points: --version, --help (fast, no heavy imports), python -m and both console scripts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spec2vol_bids import __version__
from spec2vol_bids.cli.main import main, version_string

from ..tools import require_tool

BIN = Path(sys.executable).parent


def test_version_string_format():
    assert version_string() == f"spec2vol-bids {__version__}"
    assert __version__.count(".") >= 2


def test_version_in_process(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"spec2vol-bids {__version__}"


def test_help_lists_vocabulary_and_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--participant-label", "--session-label", "--task-id", "--bids-filter-file",
                   "--skip-bids-validation", "--work-dir", "--nprocs", "--omp-nthreads", "--mem", "--use-plugin",
                   "--device", "--model", "--volume-marker", "--config-file", "--stop-on-first-crash",
                   "--write-graph", "--notrack", "--clean-workdir"):
        assert option in text, option
    # the other commands are advertised (cli.main.commands_epilog) and the exit codes are documented
    assert "simulate" in text and "train" in text
    assert "66" in text and "missing input" in text
    assert "GB" in text  # the unit of --mem is documented


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys\n"
        "from spec2vol_bids.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'nipype', 'nilearn', 'matplotlib', 'mne', 'bids') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("HEAVY=")][-1]
    assert line == "HEAVY=", f"--help imported heavy modules: {line}"


@pytest.mark.parametrize("argv", [
    [sys.executable, "-m", "spec2vol_bids", "--version"],
    [str(BIN / "spec2vol_bids"), "--version"],
    [str(BIN / "spec2vol-bids"), "--version"],
])
def test_entry_points_print_version(argv):
    require_tool(Path(argv[0]).exists(), f"{argv[0]} (editable install)")
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"spec2vol-bids {__version__}"


def test_argparse_syntax_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["a", "b", "participant", "--nprocs", "many"])
    assert exc.value.code == 2
