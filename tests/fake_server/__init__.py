"""Tests of the fake ClearTax server itself, one module per module of ``pcsid_async.testing``."""
