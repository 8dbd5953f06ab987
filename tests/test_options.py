"""safe_migrate's options are checked in one place (SafeMigrateOptions.validate) that the command,
api.safe_migrate and MigrationService all go through: the same one-line refusal, exit 2, and nothing
touched (no query, no table, no MigrationRun row, no backup, no audit line).
"""

from __future__ import annotations

import pytest
from django.db import connections

from migrations_ops import api
from migrations_ops.errors import BadInput, ExitCode
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.service import MigrationService
from tests.dbs import manage_env, run_manage
from tests.helpers import fingerprint

REHEARSE_FAKE = "--rehearse does not combine with --fake or --fake-initial (a rehearsal runs the plan)"
LINT = "--lint goes with --plan (it only reads the plan)"
NEEDS_ONLINE = "--resume, --abort and --complete go with --online"
NOT_ONLINE = "--online does not combine with --rehearse, --fake or --fake-initial"
NO_TARGET = "--resume and --abort take no target, --plan or --dry-run: they continue or undo the run"
FROM_BACKUP = "--from-backup goes with --rehearse (to restore a backup, use restore_db)"
MODES = "--plan, --dry-run and --rehearse exclude one another"
RESUME_OR_ABORT = "--resume, --abort and --complete exclude one another"
NO_COMPLETE_TARGET = "--complete takes no target, --plan or --dry-run: it contracts the open window"

# Every combination the command refuses, as SafeMigrateOptions fields; the first three are the issue's.
INVALID = [
    pytest.param({"lint": True}, LINT, id="lint-without-plan"),
    pytest.param({"resume": True}, NEEDS_ONLINE, id="resume-without-online"),
    pytest.param({"rehearse": True, "online": True}, NOT_ONLINE, id="rehearse-with-online"),
    pytest.param({"abort": True}, NEEDS_ONLINE, id="abort-without-online"),
    pytest.param({"lint": True, "online": True}, LINT, id="lint-online-without-plan"),
    pytest.param({"from_backup": "kept"}, FROM_BACKUP, id="from-backup-without-rehearse"),
    pytest.param({"online": True, "fake": True}, NOT_ONLINE, id="online-fake"),
    pytest.param({"online": True, "fake_initial": True}, NOT_ONLINE, id="online-fake-initial"),
    pytest.param({"rehearse": True, "fake": True}, REHEARSE_FAKE, id="rehearse-fake"),
    pytest.param({"online": True, "resume": True, "app_label": "billing"}, NO_TARGET, id="resume-with-target"),
    pytest.param({"online": True, "abort": True, "plan_only": True}, NO_TARGET, id="abort-with-plan"),
    pytest.param({"online": True, "resume": True, "dry_run": True}, NO_TARGET, id="resume-with-dry-run"),
    # argparse's mutually exclusive groups refuse these on the command line; the API had no check.
    pytest.param({"plan_only": True, "dry_run": True}, MODES, id="plan-dry-run"),
    pytest.param({"plan_only": True, "rehearse": True}, MODES, id="plan-rehearse"),
    pytest.param({"dry_run": True, "rehearse": True}, MODES, id="dry-run-rehearse"),
    pytest.param({"online": True, "resume": True, "abort": True}, RESUME_OR_ABORT, id="resume-abort"),
    pytest.param({"online": True, "complete": True, "abort": True}, RESUME_OR_ABORT, id="complete-abort"),
    pytest.param({"complete": True}, NEEDS_ONLINE, id="complete-without-online"),
    pytest.param({"online": True, "complete": True, "app_label": "billing"}, NO_COMPLETE_TARGET, id="complete-target"),
]


def assert_refused(error: str | None, exit_code: int, status: str, message: str) -> None:
    assert (status, exit_code, error) == ("failed", ExitCode.BAD_INPUT, message)
    assert "\n" not in error


def database_state(db) -> dict:
    """What a refused run must leave as it was: schema and content (fingerprint), django_migrations,
    and the MigrationRun rows (the fingerprint leaves those out; None: no such table yet)."""
    connection = connections[db.alias]
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    runs = (
        db.query("SELECT id, status FROM migrations_ops_migrationrun")
        if "migrations_ops_migrationrun" in tables
        else None
    )
    return {
        "fingerprint": fingerprint(db),
        "django_migrations": db.query("SELECT app, name FROM django_migrations ORDER BY app, name"),
        "runs": runs,
    }


class QueryCounter:
    """Every statement sent on the connection while installed (a refusal comes before any)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.statements.append(sql)
        return execute(sql, params, many, context)


@pytest.fixture
def untouched(baseline_db, settings, tmp_path):
    """A baseline database (migrations pending: anything run by mistake changes it); after the test,
    no statement was sent, the database is as before, and no backup or audit line was written."""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    before = database_state(baseline_db)
    counter = QueryCounter()
    with connections[baseline_db.alias].execute_wrapper(counter):
        yield baseline_db
    assert counter.statements == []
    assert database_state(baseline_db) == before
    assert not settings.BACKUP_DIR.exists() or not any(settings.BACKUP_DIR.iterdir())
    assert not settings.MIGRATION_LOG.exists()


# ---------------------------------------------------------------- (a) the options object


@pytest.mark.parametrize(("fields", "message"), INVALID)
def test_the_options_object_refuses(fields, message):
    options = SafeMigrateOptions(**fields)
    with pytest.raises(BadInput) as refused:
        options.validate()
    assert refused.value.message == message
    assert refused.value.exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"migration_name": "0002"}, "a target migration needs its app label", id="name-without-app"),
        pytest.param({"dry_run": "false"}, "option dry_run takes True or False, not 'false'", id="str-for-bool"),
        pytest.param({"from_backup": 7}, "option from_backup takes a name, not 7", id="int-for-name"),
        pytest.param({"allow_row_loss": [1]}, "--allow-row-loss takes table names, not 1", id="row-loss-int"),
        pytest.param({"allow_row_loss": [""]}, "--allow-row-loss takes table names, not ''", id="row-loss-empty"),
        pytest.param({"allow_row_loss": 5}, "--allow-row-loss takes table names, not 5", id="row-loss-scalar"),
    ],
)
def test_the_options_object_refuses_what_only_the_api_can_give(fields, message):
    with pytest.raises(BadInput) as refused:
        SafeMigrateOptions(**fields).validate()
    assert refused.value.message == message


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"plan_only": True, "lint": True},
        {"plan_only": True, "lint": True, "online": True},
        {"online": True, "resume": True},
        {"online": True, "abort": True},
        {"rehearse": True, "from_backup": "kept"},
        {"dry_run": True, "online": True},
        {"app_label": "billing", "migration_name": "zero", "fake": True, "fake_initial": True},
        {"allow_row_loss": ["users", "orders"], "allow_data_loss": True, "accept_existing_issues": True},
    ],
    ids=repr,
)
def test_the_options_the_command_accepts_pass(fields):
    SafeMigrateOptions(**fields).validate()


@pytest.mark.parametrize(
    ("given", "tables"),
    [
        ("users", {"users"}),
        (["users", "orders"], {"users", "orders"}),
        (("users",), {"users"}),
        ({"users"}, {"users"}),
        (frozenset({"users"}), {"users"}),
        (None, set()),
    ],
    ids=["a-string", "a-list", "a-tuple", "a-set", "a-frozenset", "none"],  # repr(set) differs per process
)
def test_allow_row_loss_is_a_set_of_table_names(given, tables):
    """A bare string is one table, never the set of its characters."""
    options = SafeMigrateOptions(allow_row_loss=given)
    assert options.allow_row_loss == frozenset(tables)
    options.validate()


# ---------------------------------------------------------------- (b) api.safe_migrate


@pytest.mark.parametrize(("fields", "message"), INVALID)
def test_the_api_refuses_before_touching_the_database(untouched, fields, message):
    summary = api.safe_migrate(untouched.alias, SafeMigrateOptions(**fields))
    assert_refused(summary.error, summary.exit_code, summary.status, message)
    assert summary.applied == [] and summary.backup is None
    assert summary.render().startswith("Status: refused, nothing was changed")


def test_the_api_refuses_a_migration_name_without_its_app(untouched):
    summary = api.safe_migrate(untouched.alias, SafeMigrateOptions(migration_name="0002"))
    assert_refused(summary.error, summary.exit_code, summary.status, "a target migration needs its app label")


# ---------------------------------------------------------------- (c) MigrationService


@pytest.mark.parametrize(("fields", "message"), INVALID)
def test_the_service_refuses_before_touching_the_database(untouched, fields, message):
    fields = dict(fields)
    target = fields.pop("app_label", None)
    result = MigrationService(using=untouched.alias).run_migrations_sync(target, **fields)
    assert_refused(result["error"], result["exit_code"], result["status"], message)
    assert result["applied_count"] == 0 and result["backup"] is None


# ---------------------------------------------------------------- (d) manage.py safe_migrate


@pytest.mark.parametrize(
    ("argv", "fields"),
    [
        pytest.param(["--lint"], {"lint": True}, id="lint-without-plan"),
        pytest.param(["--resume"], {"resume": True}, id="resume-without-online"),
        pytest.param(["--rehearse", "--online"], {"rehearse": True, "online": True}, id="rehearse-with-online"),
        pytest.param(["--from-backup", "kept"], {"from_backup": "kept"}, id="from-backup-without-rehearse"),
        pytest.param(
            ["billing", "--online", "--abort"],
            {"app_label": "billing", "online": True, "abort": True},
            id="abort-target",
        ),
        pytest.param(["--complete"], {"complete": True}, id="complete-without-online"),
    ],
)
def test_the_command_gives_the_options_object_s_refusal(baseline_db, tmp_path, argv, fields):
    """The real manage.py: the options object's line (the same one the API returns), exit 2, nothing on
    stdout, nothing changed."""
    with pytest.raises(BadInput) as expected:
        SafeMigrateOptions(**fields).validate()
    before = database_state(baseline_db)
    connections[baseline_db.alias].close()
    env = manage_env(BACKUP_DIR=str(tmp_path / "backups"), MIGRATION_LOG=str(tmp_path / "log" / "migration.log"))
    done = run_manage(baseline_db.url, "safe_migrate", *argv, "--noinput", env=env)
    assert (done.returncode, done.stderr, done.stdout) == (ExitCode.BAD_INPUT, f"error: {expected.value.message}\n", "")
    assert database_state(baseline_db) == before
    assert not (tmp_path / "backups").exists() and not (tmp_path / "log").exists()
