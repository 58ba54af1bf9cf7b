"""`python jobs/predict.py ARGS` runs `activa predict ARGS` (activa_ray/cli/predict.py), also under `ray job submit`."""
import sys

from activa_ray.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
