"""The environment the workflow's jobs inherit from the Snakemake process that starts them."""
from __future__ import annotations

import os


def import_from_checkout(basedir, environ=None) -> None:
    """Put the checkout first on PYTHONPATH: jobs in an environment that does not install this
    project (environment.yml under --software-deployment-method conda) import xmc from it."""
    environ = os.environ if environ is None else environ
    environ["PYTHONPATH"] = os.pathsep.join([str(basedir)] + [p for p in [environ.get("PYTHONPATH")] if p])
