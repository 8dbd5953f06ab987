"""The `users` table: names, roles and, at the head, the permissions accounts 0003 derives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from accounts.models import ROLE_PERMISSIONS, User
from seeding.base import DAY, REFERENCE, copy_safe, timestamp, user_uuid_hex

if TYPE_CHECKING:
    from seeding.run import Seeder

FIRST_NAMES = [
    "Ada", "Alan", "Amara", "Ana", "Ben", "Carla", "Chen", "Dara", "Diego", "Elena", "Emil", "Farah", "Grace",
    "Hana", "Ines", "Ivan", "Jonas", "Kai", "Lena", "Liam", "Maya", "Mei", "Nadia", "Noah", "Olga", "Omar",
    "Priya", "Quinn", "Rosa", "Sam", "Sofia", "Tariq", "Uma", "Victor", "Wen", "Yara", "Zoe",
]  # fmt: skip
LAST_NAMES = [
    "Abbott", "Bauer", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hughes", "Ito", "Jensen", "Kowalski",
    "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Quispe", "Rossi", "Schmidt", "Tanaka", "Ueda", "Varga",
    "Weber", "Xu", "Yilmaz", "Zhang",
]  # fmt: skip
DOMAINS = ("example.com", "example.org", "example.net")
copy_safe((*FIRST_NAMES, *LAST_NAMES, *DOMAINS))


def write_users(seeder: Seeder, count: int) -> None:
    """`count` users with unusable passwords, joined within three years before REFERENCE."""
    rng = seeder.rng
    head = seeder.head
    null = seeder.null
    # the rng's bound methods as locals: the row loop below runs once per user
    random_, choice, randrange, getrandbits = rng.random, rng.choice, rng.randrange, rng.getrandbits
    joined = seeder.joined
    offset = seeder.uuid_offset
    tag = f".{seeder.tag}" if seeder.tag else ""
    permissions = {role: json.dumps(dict(p)) for role, p in ROLE_PERMISSIONS.items()}
    earliest = REFERENCE - 3 * 365 * DAY

    def rows() -> Iterator[tuple]:
        # values in the model's field order (see seeder.columns)
        for index in range(count):
            r = random_()
            role = "admin" if r < 0.005 else ("staff" if r < 0.03 else "user")
            first = choice(FIRST_NAMES)
            last = choice(LAST_NAMES)
            when = earliest + randrange(3 * 365 * DAY - DAY)
            joined[index] = when
            yield (
                f"!{getrandbits(160):040x}",  # an unusable password, as set_unusable_password() writes
                null,
                "1" if role == "admin" else "0",
                user_uuid_hex(index, offset),
                f"{first.lower()}.{last.lower()}.{index + 1}{tag}@{choice(DOMAINS)}",
                f"{first} {last}",
                role,
                *((permissions[role],) if head else ()),
                "0" if random_() < 0.02 else "1",
                "0" if role == "user" else "1",
                timestamp(when),
            )

    seeder.write(User, rows(), count, "users")
