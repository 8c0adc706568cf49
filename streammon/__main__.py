"""``python -m streammon``: the same command line as ``streammon``."""

from streammon.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
