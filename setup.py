"""Packaging glue that pyproject.toml cannot express: the top-level ``schema/`` folder (the source
of truth for migrations) is shipped inside the wheel as the package ``homeserver._schema``, so an
installed server finds its migrations with importlib.resources. Everything else is in
pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(
            include=["homeserver", "homeserver.*", "appservices", "appservices.*", "bridges", "bridges.*"]
        ),
        "homeserver._schema",
    ],
    package_dir={"homeserver._schema": "schema"},
    package_data={"homeserver": ["py.typed"], "homeserver._schema": ["*.sql"]},
)
