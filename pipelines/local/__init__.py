"""Local infrastructure: JVM artifact resolution and the Kafka broker launcher."""
