"""`python jobs/experiment.py ARGS` runs `activa experiment ARGS` (activa_ray/cli/experiment.py), also under `ray job submit`."""
import sys

from activa_ray.cli.experiment import main

if __name__ == "__main__":
    sys.exit(main())
