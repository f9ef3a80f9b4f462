"""The ``pcsid-async`` command-line tool: batch renewal from a CSV, status, demo, fake server.

``main`` wires argparse to one module per command (``renew``, ``status``, ``demo``,
``fake_server``); ``csv_input`` reads and checks the devices CSV, ``results`` writes the JSON
Lines file, ``progress`` counts and shows a run live, ``summary`` prints the end-of-run tables,
``batch`` runs the renewals shared by ``renew`` and ``demo``; ``_common`` holds the rest.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
