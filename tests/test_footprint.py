"""footprint: the schema compared as a set of named columns and constraints, and each difference named."""

from __future__ import annotations

from migrations_ops import footprint

COLUMNS = {
    "id": "integer PRIMARY KEY",
    "a": "integer NOT NULL",
    "b": "varchar(10) NULL",
    "c": "integer NULL",
}
CONSTRAINTS = {
    "fp_a_uniq": "CONSTRAINT fp_a_uniq UNIQUE (a)",
    "fp_c_uniq": "CONSTRAINT fp_c_uniq UNIQUE (c)",
    "fp_a_pos": "CONSTRAINT fp_a_pos CHECK (a > 0)",
}
INDEXES = {"fp_b_idx": "CREATE INDEX fp_b_idx ON fp (b)", "fp_ab_idx": "CREATE INDEX fp_ab_idx ON fp (a, b)"}


def make_table(db, columns: dict, constraints: dict = CONSTRAINTS, indexes: dict = INDEXES) -> footprint.Footprint:
    """(Re)create table fp with its columns, constraints and indexes in the order given; the footprint after."""
    definition = ", ".join([f"{name} {spec}" for name, spec in columns.items()] + list(constraints.values()))
    with db.connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS fp")
        cursor.execute(f"CREATE TABLE fp ({definition})")
        for statement in indexes.values():
            cursor.execute(statement)
    return footprint.capture(db.alias)


def reversed_dict(mapping: dict) -> dict:
    return dict(reversed(mapping.items()))


def test_column_and_constraint_order_is_no_difference(empty_db):
    """A table rebuilt with the same columns and constraints in another order is the same schema
    (SQLite's table rebuild of wagtailcore_page swapped two columns)."""
    before = make_table(empty_db, COLUMNS)
    after = make_table(empty_db, reversed_dict(COLUMNS), reversed_dict(CONSTRAINTS), reversed_dict(INDEXES))
    assert before.differences(after) == []
    assert after.differences(before) == []
    swapped = {"id": COLUMNS["id"], "b": COLUMNS["b"], "a": COLUMNS["a"], "c": COLUMNS["c"]}
    assert before.differences(make_table(empty_db, swapped)) == []


def test_each_real_difference_is_named_one_line_per_table(empty_db):
    before = make_table(empty_db, COLUMNS)

    changed_type = make_table(empty_db, {**COLUMNS, "c": "text NULL"})
    (line,) = before.differences(changed_type)
    assert line.startswith("table fp: column c type ") and " -> " in line
    if empty_db.vendor == "sqlite":
        assert line == "table fp: column c type INTEGER -> TEXT"
    else:  # a type OID, with the Django field it maps to
        assert line == "table fp: column c type IntegerField (23) -> TextField (25)"

    (line,) = before.differences(make_table(empty_db, {**COLUMNS, "b": "varchar(10) NOT NULL"}))
    assert line == "table fp: column b nullable -> NOT NULL"

    without_c = {name: spec for name, spec in COLUMNS.items() if name != "c"}
    left = {name: spec for name, spec in CONSTRAINTS.items() if name != "fp_c_uniq"}
    (line,) = before.differences(make_table(empty_db, without_c, left))
    assert line == "table fp: column c removed, constraint fp_c_uniq removed"
    # the other way round
    (line,) = make_table(empty_db, without_c, left).differences(before)
    assert line == "table fp: column c added, constraint fp_c_uniq added"

    (line,) = before.differences(make_table(empty_db, COLUMNS, indexes={"fp_b_idx": INDEXES["fp_b_idx"]}))
    assert line == "table fp: index fp_ab_idx removed"

    other_index = {**INDEXES, "fp_ab_idx": "CREATE INDEX fp_ab_idx ON fp (b, a)"}
    (line,) = before.differences(make_table(empty_db, COLUMNS, indexes=other_index))
    assert line == "table fp: index fp_ab_idx changed (columns a, b -> b, a)"

    assert make_table(empty_db, COLUMNS).differences(before) == []  # as before again


def test_applied_migrations_that_differ_are_named(empty_db):
    from django.db.migrations.recorder import MigrationRecorder

    before = footprint.capture(empty_db.alias)
    recorder = MigrationRecorder(empty_db.connection)
    recorder.record_applied("billing", "0001_initial")
    after = footprint.capture(empty_db.alias)
    assert "applied migrations differ from before (now applied: billing.0001_initial)" in before.differences(after)
    recorder.record_unapplied("billing", "0001_initial")
    again = footprint.capture(empty_db.alias)
    assert after.differences(again) == [
        "applied migrations differ from before (no longer applied: billing.0001_initial)"
    ]


def test_an_index_that_only_changed_its_name_is_no_difference(empty_db):
    """SQLite's rebuild of a table renamed back (wagtailcore_pagerevision after reversing RenameModel
    to wagtailcore_revision and an AlterField) names its field indexes after the other table name:
    the same index to Django. Another definition under a new name is still a difference."""
    before = make_table(empty_db, COLUMNS)
    renamed = {"fp_b_idx": INDEXES["fp_b_idx"], "other_ab_idx": "CREATE INDEX other_ab_idx ON fp (a, b)"}
    assert before.differences(make_table(empty_db, COLUMNS, indexes=renamed)) == []
    other = {"fp_b_idx": INDEXES["fp_b_idx"], "other_ba_idx": "CREATE INDEX other_ba_idx ON fp (b, a)"}
    (line,) = before.differences(make_table(empty_db, COLUMNS, indexes=other))
    assert line == "table fp: index fp_ab_idx removed, index other_ba_idx added"
    unique = {"fp_b_idx": INDEXES["fp_b_idx"], "other_ab_idx": "CREATE UNIQUE INDEX other_ab_idx ON fp (a, b)"}
    (line,) = before.differences(make_table(empty_db, COLUMNS, indexes=unique))
    assert line == "table fp: index fp_ab_idx removed, index other_ab_idx added"
