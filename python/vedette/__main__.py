"""``python -m vedette``: the same command line as the ``vedette`` script."""

from vedette.cli import main

main(prog_name="vedette")
