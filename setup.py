"""Package discovery: every package under streammon/, plus topics/ as streammon.topic_specs.

pyproject.toml holds the metadata; setuptools' declarative ``packages.find`` cannot add
packages that live outside the package tree, so the two topic-spec packages are added here.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["streammon", "streammon.*"]),
                "streammon.topic_specs", "streammon.topic_specs.schemas"])
