"""The subcommands of `pipelines`, one module per group."""
