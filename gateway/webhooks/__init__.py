"""The gateway's webhooks: the change log out to subscribers' URLs, one module per job.

- ``models``: the tables (subscriptions, their deliveries, every attempt);
- ``patterns``: which event types a subscription's patterns match, and who may subscribe to them;
- ``transport``: SSRF-safe resolution of a callback URL and the one POST, over a connection
  pinned to the address that was checked;
- ``signing``: the Standard Webhooks secret and signature;
- ``config``: the dispatcher's settings (retry schedule, timeouts, concurrency);
- ``dispatcher``: ``coproduction deliver``, fanning out, sending and recording;
- ``api`` (with ``schemas``): the ``/v1/subscriptions`` routes.

FHIR subscriptions (gateway/fhir/subscriptions.py) are rows of the same tables, sent by the same
dispatcher.
"""
