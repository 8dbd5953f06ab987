#!/usr/bin/env python
"""Django's command-line utility, with the project's `--database-url` override."""

import os
import sys


def main() -> None:
    from config.cli import run

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.exit(run(sys.argv))


if __name__ == "__main__":
    main()
