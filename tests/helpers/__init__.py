"""Helpers the tests share: tiny Tacotron2 configs and batches, a toy Lightning module, a Bot API stand-in, data
and config factories. Tests get them through the fixtures in ``tests/conftest.py`` or import them from here."""
