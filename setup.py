"""Package discovery: every fixer.* package, and profiles/ shipped inside the wheel as fixer/shipped_profiles."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["fixer", "fixer.*"]), "fixer.shipped_profiles"],
    package_dir={"fixer.shipped_profiles": "profiles"},
)
