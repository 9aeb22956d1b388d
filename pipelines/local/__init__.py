"""Local infrastructure: JVM artifact resolution and the launchers of the Kafka broker, the Kafka
cluster and the Spark standalone cluster (with the process handling they share)."""
