"""PostgreSQL-only checks on crafted databases: NOT VALID constraints, invalid indexes, amcheck,
foreign keys Django does not know about, nullability drift."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from migrations_ops.validation import run_validation
from tests.helpers import check_result, failing_checks, seed_consistent_data


@pytest.fixture
def pg_seeded(pg_migrated_db):
    return pg_migrated_db, seed_consistent_data(pg_migrated_db)


def test_not_valid_check_constraint_with_violating_rows(pg_seeded):
    db, data = pg_seeded
    pricey = data["subscriptions"][2].pk
    db.query("UPDATE subscriptions SET price = 5000 WHERE id = %s", [pricey])
    db.query("ALTER TABLE subscriptions ADD CONSTRAINT crafted_price_cap CHECK (price < 1000) NOT VALID")
    report = run_validation(db.alias)
    assert failing_checks(report) == {"not_valid_constraints"}
    details = check_result(report, "not_valid_constraints").details
    (entry,) = details["not_valid"]
    assert entry["constraint"] == "crafted_price_cap" and entry["violating_rows"] == 1 and entry["first"] == [pricey]


def test_not_valid_constraint_without_violations_is_a_note(pg_seeded):
    db, _ = pg_seeded
    db.query("ALTER TABLE subscriptions ADD CONSTRAINT crafted_price_cap CHECK (price < 1000) NOT VALID")
    check = check_result(run_validation(db.alias, only=["not_valid_constraints"]), "not_valid_constraints")
    assert check.ok and "crafted_price_cap" in check.details["note"]


def test_foreign_key_django_does_not_know_not_valid_with_orphans(pg_seeded):
    db, data = pg_seeded
    db.query("CREATE TABLE crafted_notes (id serial PRIMARY KEY, subscription_id bigint)")
    db.query("INSERT INTO crafted_notes (subscription_id) VALUES (%s), (424242)", [data["subscriptions"][0].pk])
    db.query(
        "ALTER TABLE crafted_notes ADD CONSTRAINT crafted_notes_subscription_fk "
        "FOREIGN KEY (subscription_id) REFERENCES subscriptions (id) NOT VALID"
    )
    report = run_validation(db.alias)
    assert failing_checks(report) == {"foreign_keys"}
    (orphan,) = check_result(report, "foreign_keys").details["orphans"]
    assert orphan["constraint"] == "crafted_notes_subscription_fk" and orphan["validated"] is False
    assert orphan["count"] == 1 and orphan["first"] == ["id=2 -> subscription_id=424242"]
    # the NOT VALID foreign key is listed (its orphans are foreign_keys' business)
    notes = check_result(report, "not_valid_constraints").details["not_valid"]
    assert [n["constraint"] for n in notes] == ["crafted_notes_subscription_fk"]


def test_invalid_unique_index_from_a_failed_concurrent_build(pg_seeded):
    db, data = pg_seeded
    ids = [s.pk for s in data["subscriptions"]]
    db.query("UPDATE subscriptions SET variant_name = 'same' WHERE id IN (%s, %s)", ids[:2])
    with pytest.raises(IntegrityError):
        db.query("CREATE UNIQUE INDEX CONCURRENTLY crafted_variant_uniq ON subscriptions (variant_name)")
    report = run_validation(db.alias)
    assert failing_checks(report) == {"indexes"}
    (entry,) = check_result(report, "indexes").details["indexes"]
    assert entry["index"] == "crafted_variant_uniq" and entry["valid"] is False and entry["unique"] is True
    assert entry["duplicate_keys"] == 1 and entry["first"] == ["same (x2)"]


def test_amcheck_skipped_when_not_installed(pg_migrated_db):
    check = check_result(run_validation(pg_migrated_db.alias, deep=True), "amcheck")
    assert check.skipped and check.reason == "amcheck not installed (CREATE EXTENSION amcheck)"
    # validate_db never installs it itself
    assert pg_migrated_db.query("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'") == []


def test_amcheck_passes_on_clean_indexes_and_finds_a_corrupt_one(pg_seeded):
    db, _ = pg_seeded
    db.query("CREATE EXTENSION amcheck")
    clean = check_result(run_validation(db.alias, deep=True, only=["amcheck"]), "amcheck")
    assert clean.ok and not clean.skipped and clean.details["indexes_checked"] >= 20

    # A btree whose operator class changes its order after the index was built: items out of order.
    db.query("CREATE TABLE crafted_ints (x int)")
    db.query("INSERT INTO crafted_ints SELECT g FROM generate_series(1, 3000) g")
    cmp_sql = "SELECT CASE WHEN $1 < $2 THEN {lt} WHEN $1 > $2 THEN {gt} ELSE 0 END"
    db.query(
        "CREATE FUNCTION crafted_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS $f$"
        + cmp_sql.format(lt=-1, gt=1)
        + "$f$"
    )
    db.query(
        "CREATE OPERATOR CLASS crafted_ops FOR TYPE int USING btree AS OPERATOR 1 <, OPERATOR 2 <=, "
        "OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 crafted_cmp(int, int)"
    )
    db.query("CREATE INDEX crafted_ints_x ON crafted_ints (x crafted_ops)")
    db.query(
        "CREATE OR REPLACE FUNCTION crafted_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS $f$"
        + cmp_sql.format(lt=1, gt=-1)
        + "$f$"
    )
    report = run_validation(db.alias, deep=True)
    assert failing_checks(report) == {"amcheck"}
    (corrupt,) = check_result(report, "amcheck").details["corrupt"]
    assert corrupt["index"] == "crafted_ints_x" and "invariant violated" in corrupt["error"]
    assert run_validation(db.alias).ok  # without --deep amcheck does not run


def test_nullability_drift(pg_seeded):
    db, _ = pg_seeded
    db.query("ALTER TABLE pricing_configs ALTER COLUMN variant_name DROP NOT NULL")
    db.query("UPDATE subscriptions SET variant_id = 'x'")
    db.query("ALTER TABLE subscriptions ALTER COLUMN variant_id SET NOT NULL")
    report = run_validation(db.alias)
    assert failing_checks(report) == {"schema_matches_models"}
    assert check_result(report, "schema_matches_models").details["first"] == [
        "column pricing_configs.variant_name is NULL, the models say NOT NULL",
        "column subscriptions.variant_id is NOT NULL, the models say NULL",
    ]
