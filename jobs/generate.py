"""`python jobs/generate.py ARGS` runs `activa generate ARGS` (activa_ray/cli/generate.py), also under `ray job submit`."""
import sys

from activa_ray.cli.generate import main

if __name__ == "__main__":
    sys.exit(main())
