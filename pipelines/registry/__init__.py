"""The schema registry side of the project: the local Apicurio Registry (`local`), the contract
schemas and their subjects (`schemas`), and the Confluent wire format in Python (`avro`)."""

from pipelines.errors import PipelinesError


class RegistryError(PipelinesError):
    """The schema registry could not start, answer, or refused a schema: one line saying which
    schema or subject and what to do."""


__all__ = ["RegistryError"]
