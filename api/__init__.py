"""The HTTP API process (ASGI): token-authenticated, the same core calls as the pages.

Run it with ``stationmanager api`` (or ``python -m api``); ``stationmanager up`` starts it
next to the worker and the web app. See :mod:`api.app`.
"""
