"""`python jobs/tune.py ARGS` runs `activa tune ARGS` (activa_ray/cli/tune.py), also under `ray job submit`."""
import sys

from activa_ray.cli.tune import main

if __name__ == "__main__":
    sys.exit(main())
