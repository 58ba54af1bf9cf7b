"""`python jobs/curve.py ARGS` runs `activa curve ARGS` (activa_ray/cli/curve.py), also under `ray job submit`."""
import sys

from activa_ray.cli.curve import main

if __name__ == "__main__":
    sys.exit(main())
