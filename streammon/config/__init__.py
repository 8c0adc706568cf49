"""Configuration: typed, frozen settings and the settings file.

* :mod:`~streammon.config.settings` — :class:`Settings` and its parts, passed to keyword-only
  constructors;
* :mod:`~streammon.config.settings_file` — one TOML file plus ``STREAMMON_*`` overrides.
"""
