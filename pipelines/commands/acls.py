"""`pipelines acls setup|list|grant|users`: principals, SCRAM users and least-privilege ACLs.

Run as an admin principal (the credentials in PIPELINES_KAFKA__SASL_USERNAME/PASSWORD, or, for the
local secured broker, with `--local-admin`, which reads the admin password from the broker
folder's 0600 credentials file). `setup` creates (or updates) the producer and pipeline users with
the passwords in PIPELINES_PRODUCER_PASSWORD and PIPELINES_PIPELINE_PASSWORD (the local secured
broker already has both users) and the ACLs of `pipelines.kafka.acls.LEAST_PRIVILEGE`.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from pipelines.commands.common import (
    BootstrapOpt,
    ProfileOpt,
    bootstrap_servers,
    err,
    local_principal,
    out,
    settings_for,
)
from pipelines.errors import PipelinesError
from pipelines.kafka import acls
from pipelines.security import KafkaSecurity, security_for

acls_app = typer.Typer(help="Principals, SCRAM users and least-privilege ACLs of a secured cluster.")

LocalAdminOpt = Annotated[
    bool,
    typer.Option(
        "--local-admin", help="act as the admin of the local secured broker (password from its folder)"
    ),
]
PASSWORD_ENV = {acls.PRODUCER: "PIPELINES_PRODUCER_PASSWORD", acls.PIPELINE: "PIPELINES_PIPELINE_PASSWORD"}


def _target(profile: str, bootstrap: str | None, local_admin: bool) -> tuple[str, KafkaSecurity]:
    settings = settings_for(profile)
    if not local_admin:
        servers = bootstrap_servers(settings, bootstrap)
        return servers, security_for(servers)
    return local_principal(settings, None, acls.ADMIN, " (--local-admin)")


@acls_app.command("setup")
def setup(
    local_admin: LocalAdminOpt = False,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "secure",
) -> None:
    """Create or update the producer and pipeline users (passwords from PIPELINES_PRODUCER_PASSWORD
    and PIPELINES_PIPELINE_PASSWORD, where set) and their least-privilege ACLs. Idempotent."""
    servers, security = _target(profile, bootstrap, local_admin)
    passwords = {user: os.environ[env] for user, env in PASSWORD_ENV.items() if os.environ.get(env)}
    if local_admin and passwords:
        # The local broker's passwords live in its credentials file, which `pipelines broker env`
        # hands out: changing them on the broker only would lock its clients out.
        raise PipelinesError(
            f"{', '.join(PASSWORD_ENV[u] for u in passwords)} would change the local secured broker's "
            "passwords behind its credentials file; unset them with --local-admin (the local users "
            "already exist), or use them against another cluster with --bootstrap-servers"
        )
    users, count = acls.setup_least_privilege(servers, passwords, security=security)
    err.print(
        f"{count} ACLs in place"
        + (f"; SCRAM-SHA-512 credentials set for {', '.join(users)}" if users else ""),
        highlight=False,
    )


@acls_app.command("list")
def list_(
    local_admin: LocalAdminOpt = False,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "secure",
) -> None:
    """Every ALLOW ACL: principal, operation, resource type, resource (a trailing * is a prefix)."""
    servers, security = _target(profile, bootstrap, local_admin)
    table = Table("principal", "operation", "resource type", "resource", title="ACLs", title_justify="left")
    for g in acls.list_acls(servers, security=security):
        table.add_row(g.principal, g.operation, g.resource_type, f"{g.name}*" if g.prefixed else g.name)
    out.print(table)


@acls_app.command("users")
def users(
    local_admin: LocalAdminOpt = False,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "secure",
) -> None:
    """The SCRAM users and their mechanisms (never a password: the broker keeps none)."""
    servers, security = _target(profile, bootstrap, local_admin)
    table = Table("user", "mechanisms", title="SCRAM users", title_justify="left")
    for user, mechanisms in acls.list_users(servers, security=security).items():
        table.add_row(user, ", ".join(mechanisms))
    out.print(table)


@acls_app.command("grant")
def grant(
    principal: Annotated[str, typer.Argument(help="e.g. User:producer")],
    operation: Annotated[str, typer.Argument(help=f"one of {', '.join(acls.OPERATIONS)}")],
    topic: Annotated[str | None, typer.Option("--topic")] = None,
    group: Annotated[str | None, typer.Option("--group")] = None,
    transactional_id: Annotated[str | None, typer.Option("--transactional-id")] = None,
    cluster: Annotated[bool, typer.Option("--cluster")] = False,
    prefixed: Annotated[bool, typer.Option("--prefixed", help="every resource whose name starts so")] = False,
    local_admin: LocalAdminOpt = False,
    bootstrap: BootstrapOpt = None,
    profile: ProfileOpt = "secure",
) -> None:
    """Allow PRINCIPAL to OPERATION one resource (--topic, --group, --transactional-id or --cluster)."""
    resources = {
        "topic": topic,
        "group": group,
        "transactional-id": transactional_id,
        "cluster": acls.CLUSTER if cluster else None,
    }
    chosen = [(kind, name) for kind, name in resources.items() if name]
    if len(chosen) != 1:
        raise PipelinesError("give exactly one of --topic, --group, --transactional-id, --cluster")
    if operation.lower() not in acls.OPERATIONS:
        raise PipelinesError(f"unknown operation {operation!r}; use one of {', '.join(acls.OPERATIONS)}")
    if not principal.startswith("User:"):
        principal = f"User:{principal}"
    ((resource_type, name),) = chosen
    servers, security = _target(profile, bootstrap, local_admin)
    g = acls.Grant(principal, resource_type, name, operation.lower(), prefixed)
    acls.create_acls(servers, [g], security=security)
    err.print(f"granted: {g.describe()}", highlight=False)
