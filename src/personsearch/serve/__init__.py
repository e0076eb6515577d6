"""``personsearch serve``: a local web page (and JSON API) over a gallery index.

:func:`personsearch.serve.app.create_app` builds the FastAPI application; :mod:`personsearch.serve.commands`
runs it with uvicorn. FastAPI is imported only here, never by ``import personsearch``.
"""
