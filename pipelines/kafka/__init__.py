"""The confluent-kafka side: producers, topic admin, consumers."""
