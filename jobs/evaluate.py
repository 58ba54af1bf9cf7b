"""`python jobs/evaluate.py ARGS` runs `activa evaluate ARGS` (activa_ray/cli/evaluate.py), also under `ray job submit`."""
import sys

from activa_ray.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
