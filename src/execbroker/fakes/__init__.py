"""Fakes of the external services execbroker talks to, as real HTTP servers.

They behave like the originals, quirks included, and run on loopback: the test suite uses
them, and operators can start them on their own (``execbroker fake-skaha``) to try the broker
without an account anywhere.
"""
