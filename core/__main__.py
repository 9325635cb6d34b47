"""``python -m fsx`` (and ``torchrun ... -m fsx train``) runs the CLI."""

from fsx.cli import main

if __name__ == "__main__":
    main()
