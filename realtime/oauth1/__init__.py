"""OAuth 1.0a (RFC 5849) beside OAuth 2, for legacy consumers.

Apps opt in with ``oauth1 = true`` in ``apps.toml``; users, login and
consent pages are OAuth 2's.  ``signing`` reads and checks signed requests
(oauthlib underneath), ``credentials`` finds consumer and token and spends
the nonce, ``endpoints`` serves ``/oauth1/*``, ``resource`` turns a signed
request into the principal ``/api/publish`` and the WebSocket gate use,
``crypto`` keeps the shared secrets encrypted at rest.
"""
