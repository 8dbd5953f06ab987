"""Applied migration files that change: with a package upgrade (a warning naming the package and
versions, not tampering), by hand (a failure), and re-recorded by an operator (repair_checksums)."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connections

from migrations_ops import audit, checksums
from migrations_ops.api import safe_migrate
from migrations_ops.errors import ExitCode
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.validation import run_validation
from tests.helpers import manage_with_test_settings, with_apps

MODELS = """from django.db import models


class Gadget(models.Model):
    name = models.CharField(max_length=20, help_text="a gadget")

    class Meta:
        db_table = "{package}_gadgets"
"""

MIGRATION = """# {help}
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Gadget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=20, help_text="a gadget")),
            ],
            options={{"db_table": "{package}_gadgets"}},
        ),
    ]
"""


def record_line(root: Path, relative: Path) -> str:
    """A RECORD line as pip writes it: path, sha256 (urlsafe base64, unpadded), size."""
    data = (root / relative).read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{relative},sha256={digest},{len(data)}\n"


class FakeDistribution:
    """A real installed distribution on sys.path: a package, its dist-info (METADATA, RECORD)."""

    def __init__(self, root: Path) -> None:
        self.package = f"vendorpkg_{uuid.uuid4().hex[:8]}"
        self.name = self.package.replace("_", "-")
        self.root = root
        base = root / self.package
        (base / "migrations").mkdir(parents=True)
        (base / "__init__.py").write_text("")
        (base / "migrations" / "__init__.py").write_text("")
        (base / "apps.py").write_text(
            "from django.apps import AppConfig\n\n\nclass Config(AppConfig):\n"
            f"    name = {self.package!r}\n    default_auto_field = 'django.db.models.BigAutoField'\n"
        )
        self.migration = base / "migrations" / "0001_initial.py"
        self.ship("1.0")

    def ship(self, version: str) -> None:
        """Install ``version`` of the package: its migration (and model) as that version has them."""
        help_text = f"as shipped in {version}"  # an edit that leaves the model state alone
        self.migration.write_text(MIGRATION.format(help=help_text, package=self.package))
        (self.root / self.package / "models.py").write_text(MODELS.format(help=help_text, package=self.package))
        for old in self.root.glob(f"{self.package}-*.dist-info"):
            for file in old.iterdir():
                file.unlink()
            old.rmdir()
        info = self.root / f"{self.package}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {self.name}\nVersion: {version}\n")
        (info / "top_level.txt").write_text(self.package + "\n")
        files = [p.relative_to(self.root) for p in (self.root / self.package).rglob("*.py")]
        (info / "RECORD").write_text("".join(record_line(self.root, f) for f in files) + f"{info.name}/RECORD,,\n")
        for name in [m for m in sys.modules if m.startswith(self.package + ".migrations.")]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture
def vendor(tmp_path, monkeypatch, settings):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    dist = FakeDistribution(root)
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, f"{dist.package}.apps.Config"]
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    yield dist
    for name in [m for m in sys.modules if m == dist.package or m.startswith(dist.package + ".")]:
        del sys.modules[name]


def checksum_check(db):
    report = run_validation(db.alias, only=["migration_checksums"])
    return report.checks[0]


def test_an_edit_that_came_with_a_package_upgrade_is_a_warning_not_tampering(migrated_db, vendor, settings):
    db = migrated_db
    db.migrate(f"{vendor.package}:0001_initial")
    origin = db.query(
        "SELECT distribution, version FROM migrations_ops_migration_origin WHERE app = %s", [vendor.package]
    )
    assert origin == [(vendor.name, "1.0")]
    # The project's own apps come from no distribution.
    assert db.query("SELECT distribution FROM migrations_ops_migration_origin WHERE app = 'billing'")[0] == ("",)

    vendor.ship("1.1")  # the upgrade edits its applied 0001
    check = checksum_check(db)
    assert check.ok, check.details
    assert check.details["warnings"][0] == f"{vendor.package}.0001_initial changed with {vendor.name} 1.0 -> 1.1"

    # ...so migrating an unrelated app is not refused, and the run tells the operator: in its output,
    # its summary (--json) and the audit log, once though preflight and the final validation both see it.
    with_apps(settings, "ma_slow")
    said: list[str] = []
    summary = safe_migrate(db.alias, SafeMigrateOptions(app_label="ma_slow"), report=said.append)
    assert summary.status == "applied", summary.error
    warning = f"migration_checksums: {vendor.package}.0001_initial changed with {vendor.name} 1.0 -> 1.1"
    advice = "migration_checksums: review the package's changes, then: python manage.py repair_checksums"
    assert summary.warnings[0] == warning and summary.warnings[1].startswith(advice), summary.warnings
    assert len(summary.warnings) == 2
    assert summary.to_dict()["warnings"] == summary.warnings
    assert f"Warning: {warning}" in said
    assert [e["text"] for e in audit.read_events() if e["event"] == "safe_migrate.warning"] == summary.warnings
    (preflight,) = [e for e in audit.read_events() if e["event"] == "safe_migrate.preflight"]
    assert preflight["warnings"] == summary.warnings

    # The file edited in place (no longer what 1.1's RECORD lists) is tampering, upgrade or not.
    vendor.migration.write_text(vendor.migration.read_text() + "\n# edited by hand\n")
    check = checksum_check(db)
    assert not check.ok
    assert check.details["changed"][0]["migration"] == f"{vendor.package}.0001_initial"

    # The operator reviews and re-records: the checksum and the version now installed, audited.
    repaired = checksums.repair(db.alias, None, "reviewed the 1.1 changelog", "ops")
    assert [item["migration"] for item in repaired] == [f"{vendor.package}.0001_initial"]
    assert repaired[0]["old_version"] == "1.0" and repaired[0]["new_version"] == "1.1"
    assert checksum_check(db).ok and "warnings" not in checksum_check(db).details
    row = db.query(
        "SELECT version, repair_reason, repaired_by FROM migrations_ops_migration_origin WHERE app = %s",
        [vendor.package],
    )
    assert row == [("1.1", "reviewed the 1.1 changelog", "ops")]
    (event,) = [e for e in audit.read_events() if e["event"] == "checksums.repair"]
    assert event["reason"] == "reviewed the 1.1 changelog" and event["repaired"] == repaired
    assert checksums.repair(db.alias, None, "again", "ops") == []  # nothing left to repair


def overwrite_a_checksum(db) -> None:
    """Record a wrong checksum for analytics.0001_initial (the file on disk is unchanged)."""
    db.query(
        "UPDATE migrations_ops_applied_checksum SET sha256 = %s WHERE app = 'analytics' AND name = '0001_initial'",
        ["0" * 64],
    )
    connections[db.alias].close()


def recorded_checksums(db) -> list[tuple]:
    return db.query("SELECT app, name, sha256 FROM migrations_ops_applied_checksum ORDER BY app, name")


def repair_events(log: Path) -> list[dict]:
    """The checksums.repair lines of the audit log ``log`` (none when it was never written)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [event for event in map(json.loads, lines) if event["event"] == "checksums.repair"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param((), "--reason", id="no-reason"),
        pytest.param(("--reason", "  "), "--reason must say why", id="blank-reason"),
        pytest.param(
            ("nope.0001", "--reason", "x"),
            "not an applied migration with a recorded checksum: nope.0001",
            id="unknown-migration",
        ),
    ],
)
def test_repair_command_refuses_bad_input(migrated_db, tmp_path, args, message):
    db = migrated_db
    overwrite_a_checksum(db)
    env = {"BACKUP_DIR": str(tmp_path / "b"), "MIGRATION_LOG": str(tmp_path / "audit.log")}
    before = recorded_checksums(db)
    refused = manage_with_test_settings(db, "repair_checksums", *args, env=env)
    assert refused.returncode == ExitCode.BAD_INPUT, refused.stderr
    assert refused.stderr.startswith("error: ") and message in refused.stderr
    assert recorded_checksums(db) == before
    assert repair_events(tmp_path / "audit.log") == []


def test_repair_command_is_audited(migrated_db, tmp_path):
    db = migrated_db
    overwrite_a_checksum(db)
    env = {"BACKUP_DIR": str(tmp_path / "b"), "MIGRATION_LOG": str(tmp_path / "audit.log")}
    done = manage_with_test_settings(
        db, "repair_checksums", "analytics.0001_initial", "--reason", "restored from git", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    (item,) = json.loads(done.stdout)["repaired"]
    assert item["migration"] == "analytics.0001_initial" and item["old"] == "0" * 64
    assert checksum_check(db).ok
    assert [e["reason"] for e in repair_events(tmp_path / "audit.log")] == ["restored from git"]
