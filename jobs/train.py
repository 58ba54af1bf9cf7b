"""`python jobs/train.py ARGS` runs `activa train ARGS` (activa_ray/cli/train.py), also under `ray job submit`."""
import sys

from activa_ray.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
