"""restore_db NAME_OR_PATH: Restore a backup: verify it, confirm by typing the database name, take a
pre-restore safety backup, then replace the database's whole content atomically and validate.
"""

from __future__ import annotations

import sys

from migrations_ops.backups import BackupManifest, restore_backup, restore_preview
from migrations_ops.errors import BadInput, scrub
from migrations_ops.formatting import human_size
from migrations_ops.management.base import OpsCommand
from migrations_ops.progress import terminal_progress


class Command(OpsCommand):
    def add_arguments(self, parser):
        parser.add_argument("backup", metavar="NAME_OR_PATH", help="backup name, or path to its manifest or file")
        parser.add_argument("--no-safety-backup", action="store_true", help="skip the pre-restore safety backup")
        parser.add_argument(
            "--target-database-url",
            metavar="URL",
            help="restore into this database instead (created when missing)",
        )
        parser.add_argument(
            "--terminate-connections",
            action="store_true",
            help="end the other sessions on the database first (PostgreSQL)",
        )

    def confirm(self, manifest: BackupManifest, database: str, alias: str) -> bool:
        out = sys.stderr if self._json else self.stdout
        now = restore_preview(manifest, alias)
        lines = [
            f"Backup {manifest.name} ({manifest.reason}), taken {manifest.created_at} "
            f"from {manifest.database.get('name')}, {human_size(manifest.size_bytes)}",
            *now.render(),
            f"This REPLACES the whole content of database {database!r} with this backup.",
        ]
        out.write("\n".join(lines) + "\n")
        out.write(f"Type the database name ({database}) to continue: ")
        out.flush()
        try:
            answer = input()
        except EOFError:
            raise BadInput(
                "standard input is closed, so nobody can confirm: pass --noinput to restore without confirmation "
                "(nothing was changed)"
            ) from None
        return answer.strip() == database

    def handle(self, *args, **options):
        progress = terminal_progress("restore", self._verbosity, self._json)
        try:
            result = restore_backup(
                options["backup"],
                using=self.using,
                safety_backup=not options["no_safety_backup"],
                target_url=options["target_database_url"],
                terminate_connections=options["terminate_connections"],
                confirm=self.confirm if options["interactive"] else None,
                progress=progress,
            )
        finally:
            if progress:
                progress.finish()
        if not result.validation.get("ok", True):
            failed = [c["name"] for c in result.validation.get("checks", []) if not c.get("ok")]
            sys.stderr.write(scrub(f"warning: validation after restore found problems: {', '.join(failed)}\n"))
        if self._json:
            self.print_json(result.to_dict())
            return
        for ended in result.terminated_sessions:
            self.info(f"terminated {ended}")
        if result.safety_backup:
            self.info(f"safety backup: {result.safety_backup}")
        self.info(f"restored {result.backup} into {result.database.get('name')} in {result.duration_s:.1f}s")
        if result.kept_runs:
            self.info(f"kept {result.kept_runs} MigrationRun record(s) written since the backup")
        self.info("validation: " + ("ok" if result.validation.get("ok") else "PROBLEMS"))
        self.info("migration state: " + (", ".join(f"{a} {n}" for a, n in result.migrations.items()) or "none"))
