"""`reprice_subscriptions`: re-price subscriptions set-based after a pricing change (logic: billing/pricing.py)."""

from __future__ import annotations

import time

from django.db import DEFAULT_DB_ALIAS

from billing.models import Plan, PricingConfig
from billing.pricing import reprice
from migrations_ops.errors import BadInput
from migrations_ops.management.base import OpsCommand
from migrations_ops.status import require_applied


class Command(OpsCommand):
    help = (
        "Re-price every non-cancelled subscription (of a plan / variant) from the pricing config in effect now, "
        "writing a cost-history row for each whose cost changes; prints counts and the MRR change."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--plan", help=f"only this plan ({', '.join(Plan.values)})")
        parser.add_argument("--variant", help="only this variant id (subscriptions without one are 'default')")
        parser.add_argument("--dry-run", action="store_true", help="compute and report, write nothing")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias (default: default)")

    def handle(self, *args, **options) -> None:
        plan, variant, using = options["plan"], options["variant"], options["database"]
        if plan is not None and plan not in Plan.values:
            raise BadInput(f"unknown plan {plan!r}: choose one of {', '.join(Plan.values)}")
        # pricing_configs and the cost columns come with the upgrade: at the baseline say so, not a traceback.
        require_applied(("accounts", "billing", "loyalty"), using, "reprice_subscriptions")
        if variant is not None:
            configs = PricingConfig.objects.using(using).filter(variant_id=variant)
            if plan:
                configs = configs.filter(plan=plan)
            if not configs.exists():
                raise BadInput(f"no pricing config has variant {variant!r}")
        started = time.perf_counter()
        result = reprice(plan=plan, variant=variant, dry_run=options["dry_run"], using=using)
        elapsed = time.perf_counter() - started
        if self._json:
            self.print_json({**result.to_dict(), "duration_s": round(elapsed, 3)})
            return
        verb = "would re-price" if result.dry_run else "re-priced"
        self.stdout.write(
            f"{verb} {result.changed:,} of {result.candidates:,} subscriptions "
            f"({result.history_rows:,} cost changes{' to record' if result.dry_run else ' recorded'}); "
            f"MRR {result.mrr_before} -> {result.mrr_after} ({result.mrr_change:+}) in {elapsed:.2f}s"
            + (" [dry run: nothing written]" if result.dry_run else "")
        )
