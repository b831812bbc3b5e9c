"""``manage.py settle``: the dry run (no database) and the real settlement.

Tests without ``django_db`` run with the database blocked by pytest-django, so
any query from the dry run would fail them; one test also runs the real
``manage.py`` against a server that does not exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from meters.tests.factories import HOUR, T0, grid_make, meter_make, reading_make
from settlement.models import SettlementRun
from utility.ledger.selectors import account_balance, ledger_problems

REPO = Path(__file__).resolve().parents[2]
SEED_CSV = "meter,import_wh,export_wh\nCarlos,3000,0\nDanny,2000,0\nAngel,0,3000\nBennie,0,2500\n"
SEED_JSON = {
    "lines": [
        {"meter": "Angel", "import_wh": 0, "export_wh": 3000, "debit_uk": 0, "credit_uk": 2_721_818},
        {"meter": "Bennie", "import_wh": 0, "export_wh": 2500, "debit_uk": 0, "credit_uk": 2_268_182},
        {"meter": "Carlos", "import_wh": 3000, "export_wh": 0, "debit_uk": 3_000_000, "credit_uk": 0},
        {"meter": "Danny", "import_wh": 2000, "export_wh": 0, "debit_uk": 2_000_000, "credit_uk": 0},
    ],
    "pool_uk": 5_000_000,
    "fee_uk": 10_000,
    "credited_uk": 4_990_000,
    "carry_out_uk": 0,
    "import_wh": 5000,
    "export_wh": 5500,
    "loss_wh": 500,
    "loss_bp": 909,
    "alerts": [],
}


def settle(*args: str, **options) -> str:
    out = StringIO()
    call_command("settle", *args, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def seed_csv(tmp_path: Path) -> Path:
    path = tmp_path / "seed.csv"
    path.write_text(SEED_CSV)
    return path


def csv_file(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "readings.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


# -- the dry run ----------------------------------------------------------------


def test_dry_run_prints_the_seed_example_to_the_micro_coin(seed_csv):
    assert json.loads(settle("--dry-run", "--readings", str(seed_csv), "--json")) == SEED_JSON


def test_dry_run_applies_every_rule_flag(seed_csv):
    # 5 kWh at 0.5 k/kWh plus a 1,000 µk carry: pool 2,501,000; fee 1 % of it,
    # 25,010; 2,475,990 shared 3:2.5 divides exactly. 909 bp > 500: an alert.
    document = json.loads(
        settle(
            "--dry-run",
            "--readings",
            str(seed_csv),
            "--json",
            "--tariff-uk-per-kwh",
            "500000",
            "--fee-fixed-uk",
            "0",
            "--fee-bp",
            "100",
            "--carry-in-uk",
            "1000",
            "--loss-alert-bp",
            "500",
        )
    )
    assert (document["pool_uk"], document["fee_uk"], document["credited_uk"]) == (2_501_000, 25_010, 2_475_990)
    assert [line["credit_uk"] for line in document["lines"][:2]] == [1_350_540, 1_125_450]
    assert [line["debit_uk"] for line in document["lines"][2:]] == [1_500_000, 1_000_000]
    assert document["alerts"] == ["loss_high"]


def test_dry_run_without_json_prints_a_table(seed_csv):
    output = settle("--dry-run", "--readings", str(seed_csv))
    assert ["Angel", "0.000", "3.000", "0.000000", "2.721818"] in [line.split() for line in output.splitlines()]
    assert "credited     4.990000 k" in output
    assert "loss         0.500 kWh (909 bp)" in output


def test_dry_run_of_a_header_only_file_settles_the_carry(tmp_path):
    path = csv_file(tmp_path, "meter,import_wh,export_wh\n")
    document = json.loads(settle("--dry-run", "--readings", path, "--json", "--carry-in-uk", "50000"))
    assert (document["lines"], document["pool_uk"], document["fee_uk"], document["carry_out_uk"]) == (
        [],
        50_000,
        10_000,
        40_000,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: empty file"),
        ("meter,import_wh\nA,1\n", "line 1: missing column export_wh"),
        ("meter,import_wh,export_wh,note\nA,1,0,x\n", "line 1: unknown column 'note'"),
        ("meter,import_wh,export_wh\nA,-1,0\n", "line 2: import_wh is negative"),
        ("meter,import_wh,export_wh\nA,1,0\nB,1.5,0\n", "line 3: import_wh must be a whole number of Wh"),
        ("meter,import_wh,export_wh\nA,abc,0\n", "line 2: import_wh must be a whole number of Wh"),
        ("meter,import_wh,export_wh\nA,1,0\nB,1,0\nA,2,0\n", "line 4: meter 'A' appears twice (first on line 2)"),
        ("meter,import_wh,export_wh\n,1,0\n", "line 2: empty meter id"),
        ("meter,import_wh,export_wh\nA,1\n", "line 2: expected 3 fields"),
        (b"meter,import_wh,export_wh\n\xff,1,0\n", "line 2: not UTF-8 text"),
    ],
)
def test_dry_run_refuses_malformed_csv_naming_the_line(tmp_path, text, message):
    path = csv_file(tmp_path, text)
    with pytest.raises(CommandError) as refused:
        settle("--dry-run", "--readings", path, "--json")
    assert str(refused.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tariff-uk-per-kwh", "-5"], "--tariff-uk-per-kwh: must be a non-negative whole number, got '-5'"),
        (["--fee-fixed-uk", "1.5"], "--fee-fixed-uk: must be a non-negative whole number, got '1.5'"),
        (["--carry-in-uk", "abc"], "--carry-in-uk: must be a non-negative whole number, got 'abc'"),
        (["--loss-alert-bp", "1e3"], "--loss-alert-bp: must be a non-negative whole number, got '1e3'"),
        (["--fee-bp", "10001"], "--fee-bp cannot exceed 10000 (100 %), got 10001"),
    ],
)
def test_dry_run_refuses_bad_flag_values(seed_csv, flags, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        settle("--dry-run", "--readings", str(seed_csv), *flags)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tariff_uk_per_kwh": -1}, "--tariff-uk-per-kwh must be a non-negative whole number, got -1"),
        ({"fee_bp": 1.5}, "--fee-bp must be a non-negative whole number, got 1.5"),
        ({"carry_in_uk": True}, "--carry-in-uk must be a non-negative whole number, got True"),
        ({"fee_bp": 20_000}, "--fee-bp cannot exceed 10000"),
    ],
)
def test_dry_run_checks_keyword_options_that_bypass_argparse(seed_csv, options, message):
    with pytest.raises(CommandError, match=message):
        settle("--dry-run", "--readings", str(seed_csv), **options)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dry-run"], "--dry-run needs --readings FILE.csv"),
        (["--dry-run", "--readings", "/nonexistent/readings.csv"], "cannot read /nonexistent/readings.csv"),
        (["demo", "--dry-run", "--readings", "x.csv"], "takes neither GRID nor --interval"),
        (["--dry-run", "--readings", "x.csv", "--interval", "2026-01-01T00:00:00Z"], "takes neither GRID"),
        (["demo", "--json"], "--json only apply with --dry-run"),
        (["demo", "--readings", "x.csv", "--fee-bp", "5"], "--readings, --fee-bp only apply with --dry-run"),
        ([], "name the GRID to settle"),
    ],
)
def test_mixed_up_modes_are_refused_without_touching_the_database(args, message):
    with pytest.raises(CommandError, match=message):
        settle(*args)


NO_DATABASE = "postgres://postgres@127.0.0.1:1/no_such_database"


def run_manage(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``manage.py settle`` in a real process, as an operator runs it, with a
    database URL that points at no server: nothing here may need one."""
    return subprocess.run(
        [sys.executable, "manage.py", "settle", *args],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": NO_DATABASE},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_real_command_line_dry_run_needs_no_database(seed_csv):
    done = run_manage("--dry-run", "--readings", str(seed_csv), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == SEED_JSON

    from_stdin = run_manage("--dry-run", "--readings", "-", "--json", stdin=SEED_CSV)
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout) == SEED_JSON


def test_the_real_command_line_exits_non_zero_on_bad_input(tmp_path, seed_csv):
    bad_csv = run_manage("--dry-run", "--readings", csv_file(tmp_path, "meter,import_wh,export_wh\nA,1.5,0\n"))
    assert bad_csv.returncode == 1
    assert "line 2: import_wh must be a whole number of Wh" in bad_csv.stderr
    assert bad_csv.stdout == ""

    bad_flag = run_manage("--dry-run", "--readings", str(seed_csv), "--tariff-uk-per-kwh", "-5")
    assert bad_flag.returncode == 2  # argparse: usage error
    assert "must be a non-negative whole number, got '-5'" in bad_flag.stderr

    too_high = run_manage("--dry-run", "--readings", str(seed_csv), "--fee-bp", "10001")
    assert too_high.returncode == 1
    assert "--fee-bp cannot exceed 10000" in too_high.stderr

    helped = run_manage("--help")
    assert helped.returncode == 0
    assert "--dry-run" in helped.stdout
    assert "meter,import_wh,export_wh" in helped.stdout


# -- the real settlement ----------------------------------------------------------


@pytest.fixture
def seed_grid(monkeypatch):
    """The seed's four homes with readings for the first hour, ``T0``; the
    clock reads T0 + 1 h 10 min, when that hour (plus the 10 min grace) is due."""
    grid = grid_make("seed")
    meters = {name: meter_make(grid, name, kind) for name, kind in SEED_KINDS.items()}
    for name, (import_wh, export_wh) in SEED_ENERGY.items():
        reading_make(meters[name], T0, import_wh, export_wh)
    clock_set(monkeypatch, T0 + HOUR + timedelta(minutes=10))
    return grid, meters


SEED_KINDS = {"Carlos": "consumer", "Danny": "consumer", "Angel": "producer", "Bennie": "producer"}
SEED_ENERGY = {"Carlos": (3000, 0), "Danny": (2000, 0), "Angel": (0, 3000), "Bennie": (0, 2500)}
SEED_LINE = (
    "2026-01-01T00:00:00Z  settled  meters 4  pool 5.000000 k  fee 0.010000 k  credited 4.990000 k  "
    "carry 0.000000 k  loss 0.500 kWh (909 bp)  alerts: none"
)


def clock_set(monkeypatch, now) -> None:
    monkeypatch.setattr("django.utils.timezone.now", lambda: now)


@pytest.mark.django_db
def test_settle_grid_settles_the_due_hour_into_the_ledger(seed_grid):
    grid, meters = seed_grid

    assert settle("seed").splitlines() == [SEED_LINE]

    assert account_balance(meters["Angel"].account_id) == 2_721_818
    assert account_balance(meters["Bennie"].account_id) == 2_268_182
    assert account_balance(meters["Carlos"].account_id) == -3_000_000
    assert account_balance(grid.fee_account_id) == 10_000
    assert ledger_problems() == []


@pytest.mark.django_db
def test_settling_again_finds_nothing_due_and_changes_nothing(seed_grid):
    grid, meters = seed_grid
    settle("seed")

    assert settle("seed").strip() == "grid seed: nothing due (settled through 2026-01-01T01:00:00Z)"
    assert settle("seed", "--interval", "2026-01-01T00:00:00Z").startswith(
        "2026-01-01T00:00:00Z  already settled  meters 4  pool 5.000000 k"
    )
    assert SettlementRun.objects.filter(grid=grid).count() == 1
    assert account_balance(meters["Angel"].account_id) == 2_721_818


@pytest.mark.django_db
def test_a_backlog_is_settled_oldest_first_one_line_each(seed_grid, monkeypatch):
    clock_set(monkeypatch, T0 + 3 * HOUR + timedelta(minutes=10))

    lines = settle("seed").splitlines()

    assert [line.split()[0] for line in lines] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00Z",
        "2026-01-01T02:00:00Z",
    ]
    assert lines[0] == SEED_LINE
    assert "meters 0  pool 0.000000 k  fee 0.000000 k" in lines[1]


@pytest.mark.django_db
def test_settle_names_one_interval(seed_grid):
    assert settle("seed", "--interval", "2026-01-01T00:00:00Z").splitlines() == [SEED_LINE]
    # Any offset naming the same instant is the same interval.
    assert "already settled" in settle("seed", "--interval", "2026-01-01T02:00:00+02:00")


@pytest.mark.django_db
def test_nothing_due_before_the_first_hour_ends(seed_grid, monkeypatch):
    clock_set(monkeypatch, T0 + HOUR + timedelta(minutes=9))
    assert settle("seed").strip() == (
        "grid seed: nothing due (settled through nothing yet; the first interval starts 2026-01-01T00:00:00Z)"
    )
    assert not SettlementRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "now", "message"),
    [
        (["nope"], T0 + 2 * HOUR, "no grid named 'nope'"),
        (["seed", "--interval", "2026-01-01T00:30:00Z"], T0 + 2 * HOUR, "is not aligned to the grid's 3600 s"),
        (["seed", "--interval", "2026-01-01T01:00:00Z"], T0 + 2 * HOUR, "is not due until 2026-01-01T02:10:00Z"),
        (["seed", "--interval", "2026-01-01T01:00:00Z"], T0 + 3 * HOUR, "earlier interval 2026-01-01T00:00:00Z"),
        (["seed", "--interval", "2025-12-31T23:00:00Z"], T0 + 2 * HOUR, "before the grid started"),
        (["seed", "--interval", "yesterday"], T0 + 2 * HOUR, "--interval: not an ISO 8601 timestamp"),
        (["seed", "--interval", "2026-01-01T00:00:00"], T0 + 2 * HOUR, "--interval: timestamp without a UTC offset"),
    ],
)
def test_settle_refuses_what_cannot_be_settled_and_writes_nothing(seed_grid, monkeypatch, args, now, message):
    clock_set(monkeypatch, now)
    with pytest.raises(CommandError, match=message):
        settle(*args)
    assert not SettlementRun.objects.filter(status="settled").exists()


def test_an_unreachable_database_is_a_clear_error():
    done = run_manage("seed")
    assert done.returncode == 1
    assert "database error" in done.stderr
    assert "Traceback" not in done.stderr
