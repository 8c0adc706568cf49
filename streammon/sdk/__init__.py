"""What runs inside serving and routing processes.

* :mod:`~streammon.sdk.publisher` — predictions and outcomes to Kafka, never in the way;
* :mod:`~streammon.sdk.router` — sticky weighted routing from Redis route state, fails static;
* :mod:`~streammon.sdk.control_follower` — the router fast path on the control topic.
"""
