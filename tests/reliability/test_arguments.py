"""Every command's arguments, generated (hypothesis): bad input is exit 2 and ONE `error:` line.

The commands run in-process through their own ``run_from_argv`` (what manage.py calls; it ends with
sys.exit), against a real SQLite file made the ``default`` database, so hypothesis can try dozens of
inputs per command in a second. After each input: the exit code the contract gives, exactly one
line on stderr starting ``error: ``, no traceback, and nothing changed (the database's fingerprint,
the files in BACKUP_DIR). A few real ``manage.py`` subprocesses cross-check the in-process path,
and cover ``--database-url``, which manage.py applies before Django starts.
"""

from __future__ import annotations

import pytest
from django.db import connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrations_ops import backups
from migrations_ops.errors import ExitCode
from migrations_ops.fingerprint import table_checksums
from tests import dbs
from tests.dbs import manage_env, run_manage
from tests.helpers import fingerprint
from tests.reliability.harness import as_default, invoke

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # no example database in the tree: every run starts from the same seeds
    derandomize=True,
)
REAL_APPS = {"accounts", "billing", "loyalty", "analytics", "migrations_ops", "auth", "contenttypes", "admin"}
REAL_APPS |= {"sessions", "axes"}


def assert_refused(code: int, err: str, expected: int = ExitCode.BAD_INPUT) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


@pytest.fixture
def live(request, tmp_path, settings):
    """A migrated SQLite file as the ``default`` database, with one manual backup in BACKUP_DIR."""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    db = dbs.scratch(request, "sqlite", "head")
    with as_default(db):
        backups.create_backup(using=db.alias, name="kept")
        before = fingerprint(db)
        yield db
        assert fingerprint(db) == before


def state(db) -> tuple[dict, dict, list[str]]:
    """Every table's schema and content (fast on SQLite: the full fingerprint takes 0.7 s; each test
    compares that too at its end) and what BACKUP_DIR holds. The record a refused safe_migrate run
    leaves (migrations_ops_migrationrun, "failed") is the audit of the attempt, not a change."""
    connections[db.alias].close()
    schema = dict(db.query("SELECT name, sql FROM sqlite_master ORDER BY name"))
    content = table_checksums(using=db.alias)
    content.pop("migrations_ops_migrationrun", None)
    directory = backups.backup_dir(create=False)
    return schema, content, sorted(p.name for p in directory.iterdir())


# --- strategies -------------------------------------------------------------------------------------
_PATHLIKE = st.sampled_from(["/", "..", "../", "\x00", "a/b", "./", "\\", " "])
bad_names = st.one_of(
    st.builds(lambda a, bad, b: a + bad + b, st.text(max_size=8), _PATHLIKE, st.text(max_size=8)),
    st.text(alphabet="éü漢字🙂\u200b\n\t", min_size=1, max_size=10),
    st.text(alphabet="abc", min_size=101, max_size=300),
    st.sampled_from(["", ".hidden", "-dash", "_under", "a..b", "kept/", "..", "."]),
)
# Names the pattern accepts but no backup has (the only backup is "kept").
unknown_names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,30}\Z").filter(lambda n: n != "kept")
non_numbers = st.one_of(
    st.text(min_size=1, max_size=12).filter(lambda s: not s.strip().lstrip("+-").isdigit()),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
not_positive = st.integers(max_value=0).map(str)
unknown_apps = st.from_regex(r"\A[a-z][a-z_]{0,20}\Z").filter(lambda n: n not in REAL_APPS)
unknown_migrations = st.from_regex(r"\A[0-9]{4}_[a-z_]{1,20}\Z")


def _check(db, name: str, *argv: str, expected: int = ExitCode.BAD_INPUT) -> None:
    before = state(db)
    code, _out, err = invoke(name, *argv)
    assert_refused(code, err, expected)
    assert state(db) == before, f"{name} {argv!r} changed something"


# --- the migrations_ops commands ---------------------------------------------------------------------
def test_backup_names(live):
    @EXAMPLES
    @given(name=bad_names)
    def check(name):
        _check(live, "backup_db", "--name", name)

    check()


def test_backup_names_that_exist_and_files_to_adopt(live, tmp_path):
    _check(live, "backup_db", "--name", "kept")

    @EXAMPLES
    @given(path=st.one_of(bad_names, unknown_names.map(lambda n: str(tmp_path / n))))
    def check(path):
        _check(live, "backup_db", "--adopt", path)

    check()


@pytest.mark.parametrize(
    "command", [("verify_backup",), ("verify_backup", "--restore-test"), ("restore_db", "--noinput")]
)
def test_backup_names_given_to_read(live, command):
    @EXAMPLES
    @given(name=st.one_of(bad_names, unknown_names))
    def check(name):
        _check(live, command[0], name, *command[1:])

    check()


def test_rehearse_from_an_unknown_backup(live):
    @settings(EXAMPLES, max_examples=10)
    @given(name=st.one_of(bad_names, unknown_names))
    def check(name):
        _check(live, "safe_migrate", "--rehearse", "--from-backup", name, "--noinput")

    check()


def test_prune_keep(live):
    @EXAMPLES
    @given(keep=st.one_of(non_numbers, not_positive))
    def check(keep):
        _check(live, "prune_backups", f"--keep={keep}")

    check()
    _check(live, "prune_backups")  # --keep is required


def test_prune_keep_huge_keeps_everything(live):
    @settings(EXAMPLES, max_examples=10)
    @given(keep=st.integers(min_value=1, max_value=10**30))
    def check(keep):
        before = state(live)
        code, _out, err = invoke("prune_backups", f"--keep={keep}")
        assert code == ExitCode.OK and err == "", err
        assert state(live) == before

    check()


def test_safe_migrate_targets(live):
    @EXAMPLES
    @given(
        target=st.one_of(
            st.tuples(unknown_apps), st.tuples(st.sampled_from(["billing", "loyalty"]), unknown_migrations)
        )
    )
    def check(target):
        _check(live, "safe_migrate", *target, "--noinput")
        _check(live, "safe_migrate", *target, "--plan")

    check()


def test_conflicting_modes(live):
    _check(live, "safe_migrate", "--plan", "--dry-run")
    _check(live, "safe_migrate", "--resume")  # needs --online


def test_repair_checksums(live):
    _check(live, "repair_checksums", "accounts.0001_initial")  # no --reason

    @EXAMPLES
    @given(
        migration=st.one_of(
            st.builds(lambda a, m: f"{a}.{m}", unknown_apps, unknown_migrations), bad_names, unknown_apps
        ),
        reason=st.text(min_size=1, max_size=30).filter(str.strip),
    )
    def check(migration, reason):
        _check(live, "repair_checksums", migration, "--reason", reason)

    check()


@pytest.mark.parametrize(
    "command",
    ["backup_db", "list_backups", "verify_backup", "restore_db", "prune_backups", "validate_db"]
    + ["migration_status", "safe_migrate", "repair_checksums", "seed_demo_data", "reprice_subscriptions"]
    + ["rollup_analytics"],
)
def test_unknown_options_and_verbosity(live, command):
    """What argparse refuses is one `error:` line too (it printed its usage over several lines)."""

    @settings(EXAMPLES, max_examples=8)
    @given(
        argv=st.one_of(
            st.from_regex(r"\A--[a-z][a-z-]{2,15}\Z")
            .filter(lambda o: o not in ("--help", "--version"))
            .map(lambda o: (o + "-x",)),
            st.one_of(non_numbers, st.sampled_from(["4", "-1", "99"])).map(lambda v: ("--verbosity", v)),
        )
    )
    def check(argv):
        _check(live, command, *argv)

    check()


# --- the domain's commands --------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--users", "--subscriptions", "--payment-intents", "--days", "--batch-size"])
def test_seed_counts(live, option):
    @settings(EXAMPLES, max_examples=12)
    @given(value=st.one_of(non_numbers, st.integers(max_value=-1).map(str)))
    def check(value):
        _check(live, "seed_demo_data", f"{option}={value}", "--database", live.alias)

    check()


def test_reprice_filters(live):
    @EXAMPLES
    @given(option=st.sampled_from(["--plan", "--database"]), value=st.one_of(bad_names, unknown_apps))
    def check(option, value):
        _check(
            live,
            "reprice_subscriptions",
            option,
            value,
            *([] if option == "--database" else ["--database", live.alias]),
        )

    check()


def test_rollup_days(live):
    @EXAMPLES
    @given(
        option=st.sampled_from(["--date", "--since"]),
        value=st.one_of(
            non_numbers,
            st.from_regex(r"\A[0-9]{4}-(1[3-9]|[2-9][0-9])-[0-9]{2}\Z"),  # month 13..99
            st.sampled_from(["2026-02-30", "0000-01-01", "99999-01-01", "2026-1-1x", "9999-12-31"]),
        ),
    )
    def check(option, value):
        _check(live, "rollup_analytics", option, value, "--database", live.alias)

    check()


# --- cross-check: real manage.py processes ----------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "args"),
    [
        ("postgres//u:s3cret@h/db", ("list_backups",)),
        ("mysql://u:s3cret@h/db", ("validate_db",)),
        ("postgres://u:s3cret@127.0.0.1:notaport/db", ("migration_status",)),
        (None, ("prune_backups", "--keep", "x")),
        (None, ("verify_backup", "a/../b")),
    ],
)
def test_in_a_real_process(live, tmp_path, url, args):
    before = state(live)
    env = manage_env(BACKUP_DIR=str(backups.backup_dir()), MIGRATION_LOG=str(tmp_path / "log" / "migration.log"))
    done = run_manage(url or live.url, *args, env=env, timeout=60)
    assert_refused(done.returncode, done.stderr)
    assert "s3cret" not in done.stderr
    assert state(live) == before
