#!/bin/sh
# The image's install steps, in one place: the Dockerfile's builder stage runs this, and so does
# tests/deploy/test_deploy_install.py outside any container, so both install Sluice the same way.
#   build-venv.sh VENV [WHEEL_DIR]
# creates the virtualenv VENV, installs the main dependencies pinned by poetry.lock into it (never the dev group),
# builds Sluice's wheel into WHEEL_DIR (default: a temporary directory) and installs it without dependencies.
# STEP=deps does only the first two (they need pyproject.toml, poetry.lock and README.md, not src/: the image
# caches them as a layer of their own), STEP=app only the last two. Run it from the repository root.
# POETRY names the poetry executable (default: poetry on PATH); PYTHON the interpreter (default: python3).
set -eu
venv=${1:?usage: build-venv.sh VENV [WHEEL_DIR]}
wheels=${2:-$(mktemp -d)}
poetry=${POETRY:-poetry}
python=${PYTHON:-python3}
step=${STEP:-all}

if [ "$step" != app ]; then
  "$python" -m venv "$venv"
  "$poetry" check --lock
  # With VIRTUAL_ENV set, poetry installs into that environment instead of creating its own.
  VIRTUAL_ENV="$venv" POETRY_VIRTUALENVS_CREATE=false "$poetry" install --only main --no-root --no-interaction
fi
if [ "$step" != deps ]; then
  VIRTUAL_ENV="$venv" POETRY_VIRTUALENVS_CREATE=false "$poetry" build --format wheel --output "$wheels" --no-interaction
  "$venv/bin/python" -m pip install --quiet --no-cache-dir --no-deps "$wheels"/sluice-*.whl
  "$venv/bin/sluice" version
fi
