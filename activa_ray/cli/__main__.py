"""`python -m activa_ray.cli COMMAND ARGS` is `activa COMMAND ARGS`."""
import sys

from activa_ray.cli import main

sys.exit(main())
