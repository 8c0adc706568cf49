"""Kafka plumbing shared by every process.

* :mod:`~streammon.kafka.topics` — declarative topic specs, ``topics apply``, co-partitioning;
* :mod:`~streammon.kafka.topic_reader` — read topics to their end without a consumer group;
* :mod:`~streammon.kafka.partitioner` — Kafka's murmur2 key partitioner.
"""
