"""`python jobs/ship.py ARGS` runs `activa ship ARGS` (activa_ray/cli/ship.py), also under `ray job submit`."""
import sys

from activa_ray.cli.ship import main

if __name__ == "__main__":
    sys.exit(main())
